"""A strict, sans-IO HTTP/1.1 server core shared by every calcserve mode.

Bytes in, events out; a response value in, bytes out. No sockets, clocks or asyncio: drivers own
time and I/O, this module owns framing and limits, so no driver can get them wrong.

Callers use:

- `Connection`: one per TCP connection, shaped like h11. `receive_data(data)` buffers (`b""` is
  the peer's EOF), `next_event()` returns a `Request`, `ExpectContinue`, `NEED_DATA` or `CLOSED`,
  or raises `ProtocolError`; `send(request, response)` returns the bytes to write.
- `ProtocolError`: the only exception raised for client input; it carries the status to answer and
  whether the connection must close. `error_response(err)` turns it into a `Response`.
- `parse_head`, `HeadScanner`, `ChunkedDecoder`: the pieces `Connection` is built from, for a
  streams driver that reads the head and the body itself.
- `render`, `http_date`: the pure serialiser and an IMF-fixdate helper.

Rules (RFC 9112 / RFC 9110 / RFC 3986), applied strictly: token method; origin-form target of
RFC 3986 characters and well-formed %-escapes (absolute-form and `OPTIONS *` accepted, CONNECT's
authority-form answered 501); `HTTP/1.0` or `HTTP/1.1` (another well-formed version is 505); token
field names with no whitespace before the colon; no obs-fold; CRLF only (no bare CR, bare LF or
NUL); exactly one `Host` in HTTP/1.1; `Content-Length` of 1-19 ASCII digits, duplicates
identical; `Transfer-Encoding` ending in one `chunked` (else 400; another coding before it is
501), never with `Content-Length` and never in HTTP/1.0; chunk sizes ASCII hex, bounded; trailers
validated and kept apart from the headers. A head is refused at its first offending line, as soon
as that line is complete, not when the head ends.
"""

from __future__ import annotations

import contextlib
import enum
import re
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from http import HTTPStatus
from typing import Final, NamedTuple, NoReturn

__all__ = [
    "CLOSED",
    "CONTINUE_BYTES",
    "MAX_BODY_SIZE",
    "MAX_CHUNK_LINE",
    "MAX_HEADER_COUNT",
    "MAX_HEAD_SIZE",
    "MAX_REQUEST_LINE",
    "MAX_TRAILER_SIZE",
    "NEED_DATA",
    "ChunkedDecoder",
    "Closed",
    "Connection",
    "ExpectContinue",
    "Head",
    "HeadScanner",
    "NeedData",
    "Phase",
    "ProtocolError",
    "Request",
    "Response",
    "error_response",
    "http_date",
    "make_request",
    "parse_head",
    "render",
    "timeout_error",
]

# Strategy:
#
# The common case is a whole head arriving in one recv(). We find its end with one bytes.find for
# b"\r\n\r\n", decode it once as latin-1 (byte N is code point N), match the request line, and
# pull every field out with ONE findall of a line-anchored field-line pattern. Counting CR, LF
# and CRLF (C-speed bytes.count) proves there is no bare CR or LF, and "as many matches as lines"
# proves every line matched whole, so that single pass both validates and extracts. Semantics
# (Host, Content-Length, Transfer-Encoding, Connection, Expect) are then one pass, in order, over
# the few fields whose names matter (`_Framing`).
#
# Errors must not depend on how the bytes were split, and a request that is already invalid is
# refused as soon as the offending line is complete. Both come from one reference parser,
# `HeadScanner`, which takes a head line by line as its bytes arrive and remembers how far it got:
# the method on its first bytes, a bare CR when the byte after it comes, each line when its LF
# comes (request-line grammar, version, target; field-line grammar; then what the field means to
# the framing, through the same `_Framing` as the fast path), the 414/431 limits when passed; what
# only the end of the head can tell (Host present, chunked final) comes last. An error is thus a
# function of the shortest prefix that proves it, whatever the split. Whenever the fast path does
# not pass a whole head, the reference parser parses it, so it names the first offence, exactly
# as it would have named it line by line. The chunked decoder works line by line for the same
# reason.
#
# Python traps avoided: every pattern is bytes (or compiled from bytes) and used with fullmatch
# (never `$`, `\d`, `\s`, re.IGNORECASE); numbers reach int() only after a pattern has proved them
# ASCII digits or hex; we never call str.strip() without its characters, or splitlines(), on input.

# --- limits (each with its precedent) -------------------------------------------------------------

MAX_REQUEST_LINE: Final = 8 * 1024  # Apache LimitRequestLine 8190, nginx 8k buffers; gunicorn 4094
MAX_HEAD_SIZE: Final = 16 * 1024  # node.js --max-http-header-size 16 KiB; h11 16 KiB incomplete
MAX_HEADER_COUNT: Final = 100  # Apache LimitRequestFields 100; gunicorn limit_request_fields 100
MAX_BODY_SIZE: Final = 1024 * 1024  # nginx client_max_body_size 1m; a calculator needs far less
MAX_CHUNK_LINE: Final = 4 * 1024  # llhttp/h11 bound it only by their head limit; hex + any real ext
MAX_CHUNK_SIZE_DIGITS: Final = 16  # 64 bits, as llhttp (uint64 overflow is an error there)
MAX_TRAILER_SIZE: Final = 16 * 1024  # same budget as the head: trailers are header fields too

CONTINUE_BYTES: Final = b"HTTP/1.1 100 Continue\r\n\r\n"

# --- grammar (RFC 9110 / 9112), compiled from bytes ----------------------------------------------

# tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~"
#       / DIGIT / ALPHA
# token = 1*tchar
_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN = rb"[" + _TCHAR + rb"]+"
# field-vchar = VCHAR / obs-text ; field-content = field-vchar [ 1*( SP / HTAB / field-vchar )
#               field-vchar ] ; field-value = *field-content ; OWS = *( SP / HTAB )
_FVCHAR = rb"\x21-\x7e\x80-\xff"
_FIELD_VALUE = rb"(?:[" + _FVCHAR + rb"](?:[ \t" + _FVCHAR + rb"]*[" + _FVCHAR + rb"])?)?"
# field-line = field-name ":" OWS field-value OWS
_FIELD_LINE = rb"(" + _TOKEN + rb"):[ \t]*(" + _FIELD_VALUE + rb")[ \t]*"
_FIELD_LINE_RE = re.compile(_FIELD_LINE)
_FIELD_EXTRACT = re.compile(_FIELD_LINE + rb"\r\n")
# request-line = method SP request-target SP HTTP-version ; HTTP-version = "HTTP/" DIGIT "." DIGIT
# Here the target is anything up to the next SP; _split_target checks it against RFC 3986.
_REQUEST_LINE_RE = re.compile(rb"(" + _TOKEN + rb") ([^ ]+) HTTP/([0-9])\.([0-9])")
# RFC 3986: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~" ; pct-encoded = "%" HEXDIG HEXDIG
# sub-delims = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "="
# pchar = unreserved / pct-encoded / sub-delims / ":" / "@"
_PLAIN = rb"A-Za-z0-9\-._~!$&'()*+,;="  # unreserved / sub-delims
_PCT_ENCODED = rb"%[0-9A-Fa-f]{2}"
# RFC 9112 3.2.1: origin-form = absolute-path [ "?" query ] ; absolute-path = 1*( "/" segment )
# segment = *pchar ; query = *( pchar / "/" / "?" ). As the first "?" ends the path, that is "/"
# then runs of pchar, "/" and "?" between well-formed escapes.
_ORIGIN_RUN = rb"[" + _PLAIN + rb":@/?]*"
_ORIGIN = rb"/" + _ORIGIN_RUN + rb"(?:" + _PCT_ENCODED + _ORIGIN_RUN + rb")*"
# uri-host = IP-literal / IPv4address / reg-name ; reg-name = *( unreserved / pct-encoded /
# sub-delims ), which an IPv4address also matches ; port = *DIGIT
_URI_HOST = (
    rb"(?:\[[0-9A-Fa-f:.]+\]|[" + _PLAIN + rb"]*(?:" + _PCT_ENCODED + rb"[" + _PLAIN + rb"]*)*)"
)
# The fast path runs the same grammar over the head decoded as latin-1, which maps byte N to code
# point N one to one, so these explicit ranges mean exactly what they mean in the bytes patterns.
# Its request line takes an origin-form target only: the other forms take the reference path.
# Field lines are anchored at line starts (MULTILINE "^" matches only after "\n"), so when the
# number of matches equals the number of CRLF-terminated lines, every line matched whole.
_FAST_REQUEST_LINE = re.compile(
    (rb"(" + _TOKEN + rb") (" + _ORIGIN + rb") HTTP/1\.([01])\r\n").decode("latin-1")
)
_FAST_FIELD_LINE = re.compile((rb"^" + _FIELD_LINE + rb"\r\n").decode("latin-1"), re.MULTILINE)
_ORIGIN_FORM = re.compile(_ORIGIN.decode("latin-1"))
_PCT_ENCODED_FORM = re.compile(_PCT_ENCODED.decode("latin-1"))
# RFC 9112 3.2.2: absolute-form = absolute-URI, limited to the http(s) schemes we serve. No
# userinfo in the authority (RFC 9110 4.2.4); path-abempty [ "?" query ] as in origin-form.
_ABSOLUTE_FORM = re.compile(
    (rb"[Hh][Tt][Tt][Pp][Ss]?://(" + _URI_HOST + rb"(?::[0-9]*)?)((?:" + _ORIGIN + rb")|\?"
     + _ORIGIN_RUN + rb"(?:" + _PCT_ENCODED + _ORIGIN_RUN + rb")*)?").decode("latin-1")
)
# RFC 9112 3.2.3: authority-form = uri-host ":" port, for CONNECT only
_AUTHORITY_FORM = re.compile((_URI_HOST + rb":[0-9]*").decode("latin-1"))
# Host = uri-host [ ":" port ]
_HOST_RE = re.compile((_URI_HOST + rb"(?::[0-9]*)?").decode("latin-1"))
# Content-Length = 1*DIGIT, bounded so the value fits in 63 bits
_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")
# chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF ; chunk-size = 1*HEXDIG
# chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
# chunk-ext-val = token / quoted-string ; quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
_QUOTED_STRING = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_EXT = (
    rb"(?:[ \t]*;[ \t]*" + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED_STRING + rb"))?)*"
)
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1," + str(MAX_CHUNK_SIZE_DIGITS).encode() + rb"})"
                         + _CHUNK_EXT)

# Transfer-Encoding = #transfer-coding ; transfer-coding = token *( OWS ";" OWS transfer-parameter )
# transfer-parameter = token BWS "=" BWS ( token / quoted-string ). A #list may hold empty
# elements, which a recipient ignores (RFC 9110 5.6.1).
_TRANSFER_CODING = (
    _TOKEN + rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED_STRING
    + rb"))*"
)
_TRANSFER_CODINGS = re.compile(
    (rb"(?:" + _TRANSFER_CODING + rb")?(?:[ \t]*,[ \t]*(?:" + _TRANSFER_CODING + rb")?)*")
    .decode("latin-1")
)
_ONE_TRANSFER_CODING = re.compile(_TRANSFER_CODING.decode("latin-1"))

# Fields that frame or route the message may not hide in a trailer section (RFC 9110 6.5.1).
_FORBIDDEN_TRAILERS: Final = frozenset(
    {"content-length", "transfer-encoding", "host", "connection", "expect", "te", "trailer"}
)


# --- values ---------------------------------------------------------------------------------------


class ProtocolError(Exception):
    """The client broke HTTP/1.1: answer `status` and close the connection when `close`."""

    def __init__(self, message: str, status: int = 400, close: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.close = close

    def __repr__(self) -> str:
        return f"ProtocolError({self.message!r}, status={self.status}, close={self.close})"


class Phase(enum.Enum):
    """What a connection is waiting for; drivers pick their timeout from it."""

    IDLE = "IDLE"  # no byte of the next request buffered: keep-alive timeout, close silently
    HEAD = "HEAD"  # part of a head buffered: header timeout, answer 408 and close
    BODY = "BODY"  # head parsed, body incomplete: body timeout, answer 408 and close
    CLOSED = "CLOSED"  # no more requests will be produced


class NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


class Closed(enum.Enum):
    CLOSED = "CLOSED"


NEED_DATA: Final = NeedData.NEED_DATA
"""Sentinel from `next_event`: feed more bytes."""
CLOSED: Final = Closed.CLOSED
"""Sentinel from `next_event`: no more requests; finish writing, then close."""


class Request:
    """One complete request: head and whole body. Read-only by convention (compares by value).

    A plain slots class rather than a frozen dataclass: the server builds one per request, and a
    frozen dataclass's `__init__` goes through `object.__setattr__` for every field.
    """

    __slots__ = ("_index", "body", "headers", "keep_alive", "method", "path", "query", "target",
                 "trailers", "version")

    method: str
    target: str
    path: str
    query: str
    version: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    keep_alive: bool
    trailers: tuple[tuple[str, str], ...]

    def __init__(
        self, method: str, target: str, path: str, query: str, version: str,
        headers: tuple[tuple[str, str], ...], body: bytes, keep_alive: bool,
        trailers: tuple[tuple[str, str], ...] = (), *,
        _index: dict[str, str] | None = None,
    ) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.trailers = trailers
        self._index = _index  # first value per name, shared with a cached head; built lazily

    def header(self, name: str) -> str | None:
        """The first value of the field `name` (lower-case), or None."""
        index = self._index
        if index is None:
            index = self._index = _first_values(self.headers)
        return index.get(name)

    def _fields(self) -> tuple[object, ...]:
        return (self.method, self.target, self.path, self.query, self.version, self.headers,
                self.body, self.keep_alive, self.trailers)

    def __eq__(self, other: object) -> bool:
        if type(other) is not Request:
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        names = ("method", "target", "path", "query", "version", "headers", "body", "keep_alive",
                 "trailers")
        return "Request(" + ", ".join(
            f"{n}={v!r}" for n, v in zip(names, self._fields(), strict=True)) + ")"


def _first_values(headers: tuple[tuple[str, str], ...]) -> dict[str, str]:
    index: dict[str, str] = {}
    for name, value in reversed(headers):
        index[name] = value
    return index


@dataclass(frozen=True, slots=True)
class ExpectContinue:
    """The head asked for `100-continue` and its body has not arrived: write CONTINUE_BYTES."""


_EXPECT_CONTINUE: Final = ExpectContinue()


@dataclass(slots=True)
class Response:
    """A response value; `render` adds Content-Length and Connection.

    `reason` is never sent: a short machine-readable word from the handler for the driver's
    metrics and logs (routes: the CalcError kind of a 422), so nobody parses bodies back.
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    close: bool = False
    reason: str | None = None


class Head(NamedTuple):
    """A parsed and validated request head, before its body."""

    method: str
    target: str
    path: str
    query: str
    version: str
    headers: tuple[tuple[str, str], ...]
    keep_alive: bool
    content_length: int  # 0 when there is no body or the body is chunked
    chunked: bool
    expect_continue: bool  # HTTP/1.1 "Expect: 100-continue" with a body to come


def make_request(head: Head, body: bytes, trailers: tuple[tuple[str, str], ...] = ()) -> Request:
    """Join a head and its body into a `Request`."""
    return Request(
        head.method, head.target, head.path, head.query, head.version,
        head.headers, body, head.keep_alive, trailers,
    )


# --- head parsing ---------------------------------------------------------------------------------


# A request line starts with its method, a token (RFC 9110 9.1). Whatever opens with another
# byte before its first SP, CR or LF (a TLS handshake sent to the plain HTTP port, binary noise)
# is refused on its first bytes, not when a line end or the header timeout finally comes. Only
# the first METHOD_WINDOW bytes are looked at, so a trickled head costs no rescanning.
METHOD_WINDOW: Final = 64
_METHOD_SO_FAR: Final = re.compile(rb"[" + _TCHAR + rb"]*(?:[ \r\n]|\Z)")


def _check_method(buf: bytes | bytearray) -> None:
    if _METHOD_SO_FAR.match(buf, 0, METHOD_WINDOW) is None:
        raise ProtocolError(
            "malformed request line: the method is not a token (TLS to a plain HTTP port?)")


class HeadScanner:
    """A request head read line by line as it arrives: the reference parser of a head.

    Call `check(buf)` after every read with all the bytes of a head that has not ended yet (the
    same buffer, grown): it raises ProtocolError at the first offence in them and remembers how
    far it got, so a trickled head costs linear work overall. Offences are found as soon as they
    are certain: a method that is not a token on its first bytes, a bare CR when the byte after
    it arrives, a line that breaks the grammar or the framing rules when its LF arrives, 414 and
    431 when a limit is passed. `finish(head)` takes the whole head (ending in CRLF CRLF), checks
    what only the end can tell (Host present, chunked final) and returns its `Head`;
    `parse_head` is a faster way to the same result or the same error.
    """

    __slots__ = ("_fields", "_framing", "_lines", "_max_body", "_request", "_seen", "_start")

    def __init__(self, *, max_body_size: int = MAX_BODY_SIZE) -> None:
        self._max_body = max_body_size
        self._start = 0  # where the line being read starts; every line before it passed
        self._seen = 0  # bytes searched for LF and bare CR so far
        self._lines = 0  # complete lines; the request line is line 1
        self._request: tuple[str, str, str, str] | None = None  # method, target, path, query
        self._framing: _Framing | None = None
        self._fields: list[tuple[str, str]] = []

    def check(self, buf: bytes | bytearray) -> None:
        """Check the head so far (no CRLF CRLF in `buf` yet); raise at its first offence."""
        if not self._lines:
            _check_method(buf)
        self._scan(buf, min(len(buf), MAX_HEAD_SIZE))
        if len(buf) >= MAX_HEAD_SIZE:
            raise ProtocolError("request head too large", 431)

    def finish(self, head: bytes | bytearray) -> Head:
        """Check the whole `head` (no leading empty lines) and return it parsed."""
        if not head.endswith(b"\r\n\r\n"):
            raise ProtocolError("request head must end with an empty line")
        if not self._lines:
            _check_method(head)
        # The terminator's final CRLF is not a line of its own; the line before it ends at -3.
        self._scan(head, min(len(head) - 2, MAX_HEAD_SIZE))
        if len(head) > MAX_HEAD_SIZE:
            raise ProtocolError("request head too large", 431)
        request, framing = self._request, self._framing
        assert request is not None and framing is not None  # the request line ends at -3 or before
        return framing.head(*request, tuple(self._fields))

    def _scan(self, buf: bytes | bytearray, stop: int) -> None:
        # Take the lines of buf[:stop] that end in it, in order; the first offence wins. A CR is
        # bare unless the next byte is LF, so one at the last byte searched waits for the next.
        find = buf.find
        start = self._start
        seen = self._seen
        while True:
            limit = stop if self._lines else min(stop, MAX_REQUEST_LINE + 2)
            end = find(b"\n", seen, limit)
            # (Never a negative end: find would count it from the end of buf.)
            if find(b"\r", max(seen - 1, start), max((limit if end < 0 else end) - 1, 0)) >= 0:
                raise ProtocolError("bare CR in request head (CR must be followed by LF)")
            if end < 0:
                self._start = start
                self._seen = max(seen, limit)
                if not self._lines and stop >= MAX_REQUEST_LINE + 2:
                    raise ProtocolError("request line too long", 414)
                return
            if end == 0 or buf[end - 1] != 0x0D:
                raise ProtocolError("bare LF in request head (lines must end with CRLF)")
            self._lines += 1
            self._take_line(buf, start, end - 1)
            start = seen = end + 1

    def _take_line(self, buf: bytes | bytearray, start: int, end: int) -> None:
        framing = self._framing
        if framing is None:
            m = _REQUEST_LINE_RE.fullmatch(buf, start, end)
            if m is None:
                raise ProtocolError("malformed request line")
            if m.group(3) != b"1" or m.group(4) not in (b"0", b"1"):
                raise ProtocolError("HTTP version not supported (use HTTP/1.1 or HTTP/1.0)", 505)
            method = m.group(1).decode("ascii")
            target = m.group(2).decode("latin-1")
            self._framing = _Framing("1.1" if m.group(4) == b"1" else "1.0", self._max_body)
            path, query = _split_target(method, target)
            self._request = (method, target, path, query)
            return
        if self._lines - 1 > MAX_HEADER_COUNT:
            raise ProtocolError("too many header fields", 431)
        m = _FIELD_LINE_RE.fullmatch(buf, start, end)
        if m is None:
            _field_line_error(buf[start:end])
        name = m.group(1).decode("ascii").lower()
        value = m.group(2).decode("latin-1")
        self._fields.append((name, value))
        if name in _SPECIAL_FIELDS:
            framing.add(name, value)


def _field_line_error(line: bytes | bytearray) -> NoReturn:
    if line[:1] in (b" ", b"\t"):
        # RFC 9112 5.2 obs-fold, or 2.2 whitespace between the start-line and the first field.
        raise ProtocolError("line starts with whitespace (obsolete line folding)")
    name, colon, _ = line.partition(b":")
    if not colon:
        raise ProtocolError("header field without a colon")
    if name[-1:] in (b" ", b"\t"):
        raise ProtocolError("whitespace between header field name and colon")
    if b"\0" in line:
        raise ProtocolError("NUL in header field")
    raise ProtocolError("invalid header field")


def parse_head(head: bytes | bytearray, *, max_body_size: int = MAX_BODY_SIZE) -> Head:
    """Parse a whole head ending in b"\\r\\n\\r\\n" (no leading empty lines); raise ProtocolError.

    A streams driver reads up to and including the first b"\\r\\n\\r\\n", calls this, then reads
    `content_length` bytes or feeds a `ChunkedDecoder`. The answer is `HeadScanner`'s, faster.
    """
    text = head.decode("latin-1")
    m = _FAST_REQUEST_LINE.match(text)
    if m is None or len(head) > MAX_HEAD_SIZE or m.end() - 2 > MAX_REQUEST_LINE:
        return HeadScanner(max_body_size=max_body_size).finish(head)
    crlf = head.count(b"\r\n")
    fields = _FAST_FIELD_LINE.findall(text, m.end(), len(text) - 2)
    method, target, minor = m.groups()
    if (
        len(fields) != crlf - 2
        or len(fields) > MAX_HEADER_COUNT
        or head.count(b"\n") != crlf
        or head.count(b"\r") != crlf
        or not text.endswith("\r\n\r\n")
        or method == "CONNECT"
    ):
        return HeadScanner(max_body_size=max_body_size).finish(head)
    # Every line is well-formed and the target is origin-form: what is left to check is what the
    # framing fields say, in the order they came, as HeadScanner does.
    headers = tuple([(name.lower(), value) for name, value in fields])
    framing = _Framing("1.1" if minor == "1" else "1.0", max_body_size)
    for name, value in headers:
        if name in _SPECIAL_FIELDS:
            framing.add(name, value)
    path, _, query = target.partition("?")
    return framing.head(method, target, path, query, headers)


def _split_target(method: str, target: str) -> tuple[str, str]:
    # RFC 9112 3.2: the four forms of request-target, each for its own methods; (path, query).
    if method == "CONNECT":
        if _AUTHORITY_FORM.fullmatch(target) is None:
            raise ProtocolError("CONNECT needs an authority-form target (host:port)")
        # RFC 9110 9.3.6: CONNECT asks for a tunnel, which only a proxy makes; what follows the
        # head may already be tunnelled bytes, so the connection closes after the answer.
        raise ProtocolError("CONNECT is not supported: this is an origin server, not a proxy", 501)
    if target[0] == "/":
        if _ORIGIN_FORM.fullmatch(target) is None:
            raise ProtocolError(_target_problem(target))
        path, _, query = target.partition("?")
        return path, query
    if target == "*":
        if method != "OPTIONS":
            raise ProtocolError("asterisk-form target is only for OPTIONS")
        return "*", ""
    m = _ABSOLUTE_FORM.fullmatch(target)
    if m is None or m.group(1)[:1] in ("", ":"):
        raise ProtocolError("request target must be origin-form or absolute-form")
    path, _, query = (m.group(2) or "").partition("?")
    return path or "/", query


_TARGET_CHAR = re.compile((rb"[" + _PLAIN + rb":@/?]").decode("latin-1"))


def _target_problem(target: str) -> str:
    """Why an origin-form target is refused, naming the first offending character (the error
    path only: a client that typed `?expr=2^10` learns to send `%5E`)."""
    i = 0
    while i < len(target):
        char = target[i]
        if char == "%":
            if _PCT_ENCODED_FORM.match(target, i) is None:
                return (f"invalid request-target: malformed %-escape at {i} "
                        "(RFC 3986: % must be followed by two hex digits)")
            i += 3
            continue
        if _TARGET_CHAR.match(char) is None:
            what = repr(char) if char.isprintable() and ord(char) < 0x80 else (
                f"byte 0x{ord(char):02x}")
            return (f"invalid request-target: {what} at {i} must be percent-encoded as "
                    f"%{ord(char):02X} (RFC 3986)")
        i += 1
    return "invalid request-target (RFC 3986)"  # pragma: no cover - the grammar matched


# Fields whose names change how a request is framed or answered; the rest pass through.
_SPECIAL_FIELDS: Final = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "expect"}
)


class _Framing:
    # What the fields that frame a request say, taken one field line at a time, in order. `add`
    # raises as soon as a line makes the head invalid whatever follows it (a second Host, a bad
    # or conflicting Content-Length, chunked not last); `head` applies the rules that need the
    # whole head (Host present; chunked the final coding) and builds the Head.
    __slots__ = ("chunked", "codings", "connection", "expect", "host", "length", "max_body",
                 "version")

    def __init__(self, version: str, max_body: int) -> None:
        self.version = version
        self.max_body = max_body
        self.host: str | None = None
        self.length: str | None = None
        self.codings: list[str] | None = None  # codings before chunked; None: no Transfer-Encoding
        self.chunked = False
        self.connection: list[str] = []
        self.expect = False

    def add(self, name: str, value: str) -> None:
        if name == "host":
            # RFC 9112 3.2: 400 for more than one Host line or an invalid Host value.
            if self.host is not None:
                raise ProtocolError("more than one Host header field")
            if _HOST_RE.fullmatch(value) is None:
                raise ProtocolError("invalid Host")
            self.host = value
        elif name == "content-length":
            # RFC 9112 6.3 (5): an invalid or conflicting Content-Length is an unrecoverable error.
            if _CONTENT_LENGTH.fullmatch(value) is None:
                raise ProtocolError("Content-Length must be 1 to 19 ASCII digits")
            if self.length is not None and value != self.length:
                raise ProtocolError("conflicting Content-Length values")
            if self.codings is not None:
                raise ProtocolError("both Transfer-Encoding and Content-Length")
            if int(value) > self.max_body:  # safe: proved 1-19 ASCII digits above
                raise ProtocolError(f"body larger than {self.max_body} bytes", 413)
            self.length = value
        elif name == "transfer-encoding":
            if self.version == "1.0":  # RFC 9112 6.1: treat as faulty framing
                raise ProtocolError("Transfer-Encoding in an HTTP/1.0 request")
            if self.length is not None:  # RFC 9112 6.1: a smuggling attempt; we reject it
                raise ProtocolError("both Transfer-Encoding and Content-Length")
            self._add_codings(value)
        elif name == "connection":
            self.connection.append(value)
        elif self.version == "1.1":  # Expect; HTTP/1.0 expectations are ignored (RFC 9110 10.1.1)
            if self.expect or value.lower() != "100-continue":
                raise ProtocolError("unsupported expectation", 417)
            self.expect = True

    def _add_codings(self, value: str) -> None:
        codings = self.codings
        if codings is None:
            codings = self.codings = []
        if value.lower() == "chunked":  # the common case
            items = [value]
        elif _TRANSFER_CODINGS.fullmatch(value) is not None:
            items = _ONE_TRANSFER_CODING.findall(value)
        else:
            raise ProtocolError("malformed Transfer-Encoding")
        for item in items:
            # Once chunked is seen, any further coding (in this line or a later one) leaves it
            # not final (RFC 9112 6.3) or applied twice (RFC 9112 7.1): both are 400.
            if self.chunked:
                raise ProtocolError("chunked applied more than once" if item.lower() == "chunked"
                                    else "chunked is not the final transfer coding")
            if item.lower() == "chunked":
                self.chunked = True
            else:
                codings.append(item)

    def head(self, method: str, target: str, path: str, query: str,
             headers: tuple[tuple[str, str], ...]) -> Head:
        if self.host is None and self.version == "1.1":
            raise ProtocolError("HTTP/1.1 request without Host")
        chunked = False
        length = 0
        codings = self.codings
        if codings is not None:
            if not self.chunked:  # RFC 9112 6.3: MUST answer 400 and close
                raise ProtocolError("chunked is not the final transfer coding "
                                    "(the body length cannot be determined)")
            if codings:  # RFC 9112 6.1: a coding we do not understand, SHOULD 501
                raise ProtocolError(f"unsupported transfer coding {codings[0]!r} "
                                    "(only chunked is)", 501)
            chunked = True
        elif self.length is not None:
            length = int(self.length)

        connection = self.connection
        version = self.version
        if not connection:
            keep_alive = version == "1.1"
        elif len(connection) == 1 and connection[0].lower() == "keep-alive":
            keep_alive = True
        else:
            tokens = {t.strip(" \t") for t in ",".join(connection).lower().split(",")}
            keep_alive = "close" not in tokens and (version == "1.1" or "keep-alive" in tokens)
        expect_continue = self.expect and (chunked or length > 0)
        return Head(method, target, path, query, version, headers, keep_alive, length, chunked,
                    expect_continue)


# --- chunked bodies -------------------------------------------------------------------------------


class _Chunk(enum.Enum):
    SIZE = 0
    DATA = 1
    DATA_END = 2
    TRAILER = 3
    DONE = 4


class ChunkedDecoder:
    """Incremental decoder for a chunked body.

    `feed(data)` returns the body bytes decoded so far from everything fed (possibly b""), or
    raises ProtocolError (400 malformed, 413 over `max_body_size`, 431 trailers too large). Once
    `done`, `trailers` holds the trailer fields and `unused` the bytes fed after the body (the next
    pipelined request); further feeds only add to `unused`.
    """

    __slots__ = ("_buf", "_lines", "_max", "_remaining", "_state", "_total", "_trailer_bytes",
                 "trailers", "unused")

    def __init__(self, max_body_size: int = MAX_BODY_SIZE) -> None:
        self._buf = bytearray()
        self._state = _Chunk.SIZE
        self._max = max_body_size
        self._total = 0
        self._remaining = 0
        self._trailer_bytes = 0
        self._lines = 0
        self.trailers: tuple[tuple[str, str], ...] = ()
        self.unused = b""

    @property
    def done(self) -> bool:
        return self._state is _Chunk.DONE

    def feed(self, data: bytes) -> bytes:
        if self._state is _Chunk.DONE:
            self.unused += data
            return b""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while buf:
            state = self._state
            if state is _Chunk.DATA:
                n = min(self._remaining, len(buf))
                out.append(bytes(buf[:n]))
                del buf[:n]
                self._remaining -= n
                if not self._remaining:
                    self._state = _Chunk.DATA_END
            elif state is _Chunk.SIZE:
                if not self._maybe_read_size(buf):
                    break
            elif state is _Chunk.DATA_END:
                if buf[0] != 0x0D or (len(buf) > 1 and buf[1] != 0x0A):
                    raise ProtocolError("chunk data not followed by CRLF")
                if len(buf) < 2:
                    break
                del buf[:2]
                self._state = _Chunk.SIZE
            elif not self._maybe_read_trailer(buf):
                break
            if self._state is _Chunk.DONE:
                self.unused = bytes(buf)
                buf.clear()
        return b"".join(out)

    def _maybe_read_size(self, buf: bytearray) -> bool:
        end = buf.find(b"\n", 0, MAX_CHUNK_LINE + 2)
        _check_no_bare_cr(buf, end if end >= 0 else min(len(buf), MAX_CHUNK_LINE + 2))
        if end < 0:
            if len(buf) >= MAX_CHUNK_LINE + 2:
                raise ProtocolError("chunk size line too long")
            return False
        if end == 0 or buf[end - 1] != 0x0D:
            raise ProtocolError("bare LF in chunk size line")
        m = _CHUNK_LINE.fullmatch(buf, 0, end - 1)
        if m is None:
            raise ProtocolError("malformed chunk size line")
        size = int(m.group(1), 16)  # safe: proved ASCII hex, at most 16 digits
        del buf[: end + 1]
        if self._total + size > self._max:
            raise ProtocolError(f"body larger than {self._max} bytes", 413)
        self._total += size
        if size:
            self._remaining = size
            self._state = _Chunk.DATA
        else:
            self._state = _Chunk.TRAILER
        return True

    def _maybe_read_trailer(self, buf: bytearray) -> bool:
        left = MAX_TRAILER_SIZE - self._trailer_bytes
        end = buf.find(b"\n", 0, left)
        _check_no_bare_cr(buf, end if end >= 0 else min(len(buf), left))
        if end < 0:
            if len(buf) >= left:
                raise ProtocolError("trailer section too large", 431)
            return False
        if end == 0 or buf[end - 1] != 0x0D:
            raise ProtocolError("bare LF in trailer section")
        if end == 1:
            del buf[:2]
            self._state = _Chunk.DONE
            return True
        m = _FIELD_EXTRACT.fullmatch(buf, 0, end + 1)
        if m is None:
            raise ProtocolError("invalid trailer field")
        self._lines += 1
        if self._lines > MAX_HEADER_COUNT:
            raise ProtocolError("too many trailer fields", 431)
        name = m.group(1).decode("ascii").lower()
        if name in _FORBIDDEN_TRAILERS:
            raise ProtocolError(f"{name} is not allowed in a trailer section")
        self.trailers += ((name, m.group(2).decode("latin-1")),)
        self._trailer_bytes += end + 1
        del buf[: end + 1]
        return True


def _check_no_bare_cr(buf: bytearray, stop: int) -> None:
    # RFC 9112 2.2, as in the head: a CR in buf[:stop] not followed by LF, refused as soon as the
    # byte after it arrives (stop is the line's LF, or the end of what has arrived).
    if buf.find(b"\r", 0, max(stop - 1, 0)) >= 0:
        raise ProtocolError("bare CR in chunked framing (CR must be followed by LF)")


# --- the connection -------------------------------------------------------------------------------


class Connection:
    """The HTTP/1.1 state of one TCP connection, server side.

    Call `receive_data` with what you read (b"" at EOF), then `next_event` until it returns
    NEED_DATA (read more) or CLOSED (finish writing, then close). For each `Request`, write
    `send(request, response)`; for `ExpectContinue`, write CONTINUE_BYTES. On ProtocolError, write
    `send(None, error_response(err))` and close. `phase` tells a driver which timeout applies.
    """

    __slots__ = ("_buf", "_closed", "_decoder", "_eof", "_head", "_index", "_max_body",
                 "_must_close", "_parts", "_scanner", "_search")

    def __init__(self, *, max_body_size: int = MAX_BODY_SIZE) -> None:
        # Unparsed input. bytes while it is one peer read as received (no copy: the common case),
        # a bytearray once reads have to be joined or a long pipeline consumed from the front.
        self._buf: bytes | bytearray = b""
        self._max_body = max_body_size
        self._eof = False
        self._closed = False  # next_event will only ever return CLOSED
        self._must_close = False  # the connection ends after the current response
        self._head: Head | None = None
        self._index: dict[str, str] | None = None  # the head's first value per field name
        self._decoder: ChunkedDecoder | None = None
        self._parts: list[bytes] = []
        self._search = 0  # where the b"\r\n\r\n" search resumes
        self._scanner: HeadScanner | None = None  # the checks of a head still arriving

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes read from the peer; b"" means the peer will send no more."""
        if not data:
            self._eof = True
        elif not self._closed:
            buf = self._buf
            if not buf:
                self._buf = data if type(data) is bytes else bytes(data)
            elif type(buf) is bytes:
                joined = bytearray(buf)
                joined += data
                self._buf = joined
            else:
                buf += data

    def _drop(self, n: int) -> None:
        # Consume the first n buffered bytes. Slicing bytes copies what is left, so a long rest
        # (a pipeline) moves to a bytearray once, whose front deletions are O(1) in CPython.
        buf = self._buf
        if isinstance(buf, bytes):
            left = len(buf) - n
            if not left:
                self._buf = b""
            elif left <= _SLICE_LIMIT:
                self._buf = buf[n:]
            else:
                self._buf = bytearray(memoryview(buf)[n:])
        else:
            del buf[:n]

    @property
    def phase(self) -> Phase:
        if self._closed:
            return Phase.CLOSED
        if self._head is not None:
            return Phase.BODY
        return Phase.HEAD if self._buf else Phase.IDLE

    @property
    def keep_alive(self) -> bool:
        """False once the connection must close after what has been sent."""
        return not (self._closed or self._must_close)

    def next_event(self) -> Request | ExpectContinue | NeedData | Closed:
        """The next event; raises ProtocolError, after which the connection is CLOSED."""
        if self._closed:
            return CLOSED
        if not self._buf and not self._eof and self._head is None:
            return NEED_DATA  # the common case after a read's last request
        try:
            if self._head is None:
                return self._maybe_read_head()
            return self._maybe_read_body(self._head)
        except ProtocolError:
            self._closed = True
            self._must_close = True
            self._buf = b""
            raise

    def _maybe_read_head(self) -> Request | ExpectContinue | NeedData | Closed:
        buf = self._buf
        if buf.startswith(b"\r\n"):
            # RFC 9112 2.2: ignore empty lines received before the request line.
            buf = self._buf = bytearray(buf)
            while buf.startswith(b"\r\n"):
                del buf[:2]
                self._search = 0
                self._scanner = None
        end = buf.find(b"\r\n\r\n", self._search) + 4
        if end < 4:
            if not buf:
                if self._eof:
                    self._closed = True
                    return CLOSED
                return NEED_DATA
            scanner = self._scanner
            if scanner is None:
                scanner = self._scanner = HeadScanner(max_body_size=self._max_body)
            scanner.check(buf)  # a line that is already wrong is refused now, not at the end
            if self._eof:
                raise ProtocolError("connection closed in the middle of a request head")
            self._search = max(0, len(buf) - 3)
            return NEED_DATA
        raw = buf if end == len(buf) else buf[:end]
        if type(raw) is not bytes:
            raw = bytes(raw)
        index: dict[str, str] | None
        cached = _HEAD_CACHE.get(raw)
        if cached is not None and cached[0].content_length <= self._max_body:
            head, index = cached
        else:
            head = parse_head(raw, max_body_size=self._max_body)
            index = _remember_head(raw, head)
        self._search = 0
        self._scanner = None
        if not head.chunked:
            stop = end + head.content_length
            if stop <= len(buf):  # the whole request is here (the common case)
                body = buf[end:stop] if stop > end else b""
                if type(body) is not bytes:
                    body = bytes(body)
                if stop == len(buf):
                    self._buf = b""
                else:
                    self._drop(stop)
                return self._complete(head, index, body)
        else:
            self._decoder = ChunkedDecoder(self._max_body)
        self._drop(end)
        self._head = head
        self._index = index
        if head.expect_continue and not self._buf:
            return _EXPECT_CONTINUE
        return self._maybe_read_body(head)

    def _maybe_read_body(self, head: Head) -> Request | NeedData:
        buf = self._buf
        decoder = self._decoder
        if decoder is None:
            n = head.content_length
            have = len(buf)
            if have >= n:
                body = buf[:n] if have > n else buf
                if type(body) is not bytes:
                    body = bytes(body)
                self._drop(n)
                return self._complete(head, self._index, body)
        elif buf:
            self._parts.append(decoder.feed(buf if type(buf) is bytes else bytes(buf)))
            self._buf = b""
            if decoder.done:
                self._buf = decoder.unused
                body = b"".join(self._parts)
                self._parts = []
                self._decoder = None
                return self._complete(head, self._index, body, decoder.trailers)
        if self._eof:
            raise ProtocolError("connection closed in the middle of a request body")
        return NEED_DATA

    def _complete(
        self, head: Head, index: dict[str, str] | None, body: bytes,
        trailers: tuple[tuple[str, str], ...] = (),
    ) -> Request:
        self._head = None
        self._index = None
        if not head.keep_alive:
            self._closed = True
            self._must_close = True
            self._buf = b""
        return Request(head.method, head.target, head.path, head.query, head.version,
                       head.headers, body, head.keep_alive, trailers, _index=index)

    def send(self, request: Request | None, response: Response, *,
             date: bytes | None = None) -> bytes:
        """The bytes of `response` to `request` (None: an error before a request was parsed)."""
        close = response.close or request is None or not request.keep_alive
        if self._must_close and not close:
            response = replace(response, close=True)
            close = True
        data = render(request, response, date=date)
        if close:
            self._closed = True
            self._must_close = True
            self._buf = b""
        return data


# A rest of a read up to this size is sliced (copied) per request; beyond, kept in a bytearray.
_SLICE_LIMIT: Final = 4096

# Strategy: clients resend identical heads (a browser's, a load generator's, a proxy's), and
# parsing is a pure function of the head's bytes, so parsed heads are remembered keyed by those
# exact bytes. Errors are never cached (they raise), and the only input besides the bytes, a
# connection's body limit, is re-checked on every hit (a head over it is parsed again, to raise
# its 413). Bounded in entries and in bytes per entry, evicted oldest first, shared by all
# connections (dict operations are atomic under the GIL; a racing eviction is tolerated).
HEAD_CACHE_SIZE: Final = 256
HEAD_CACHE_MAX_BYTES: Final = 2048  # a browser's head with a few cookies; 256 x 2 KiB ~ 1.5 MiB
_HEAD_CACHE: dict[bytes, tuple[Head, dict[str, str]]] = {}


def _remember_head(raw: bytes, head: Head) -> dict[str, str] | None:
    if len(raw) > HEAD_CACHE_MAX_BYTES:
        return None
    index = _first_values(head.headers)
    cache = _HEAD_CACHE
    if len(cache) >= HEAD_CACHE_SIZE:
        with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # a racing eviction
            del cache[next(iter(cache))]
    cache[raw] = (head, index)
    return index


# --- serialising ----------------------------------------------------------------------------------


# RFC 9110 renamed a few reasons that Python 3.11's http.HTTPStatus still spells the old way.
_REASONS: Final = {413: "Content Too Large", 414: "URI Too Long", 422: "Unprocessable Content"}


def _status_line(status: int) -> str:
    reason = _REASONS.get(status)
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
    return f"HTTP/1.1 {status} {reason}\r\n"


_STATUS_LINES: Final = {int(s): _status_line(int(s)) for s in HTTPStatus}
_NO_BODY_STATUS: Final = frozenset({204, 304})


_STATUS_LINE_BYTES: Final = {s: line.encode("latin-1") for s, line in _STATUS_LINES.items()}

# Responses repeat the same few header lists (routes builds them from constants), so each list's
# validated, encoded block is remembered, keyed by its items; bounded like the head cache.
HEADER_BLOCK_CACHE_SIZE: Final = 256
HEADER_BLOCK_MAX_BYTES: Final = 1024
_HEADER_BLOCKS: dict[tuple[tuple[str, str], ...], bytes] = {}


def _header_block(headers: list[tuple[str, str]]) -> bytes:
    fields = "".join([f"{name}: {value}\r\n" for name, value in headers])
    count = len(headers)
    if fields.count("\n") != count or fields.count("\r") != count:
        raise ValueError("CR or LF inside a response header field")
    block = fields.encode("latin-1")
    # Only pairs of str are remembered: the key must compare equal exactly when the text does.
    if len(block) <= HEADER_BLOCK_MAX_BYTES and all(
        type(item) is tuple and type(item[0]) is str and type(item[1]) is str for item in headers
    ):
        cache = _HEADER_BLOCKS
        if len(cache) >= HEADER_BLOCK_CACHE_SIZE:
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                del cache[next(iter(cache))]
        cache[tuple(headers)] = block
    return block


def render(request: Request | None, response: Response, *, date: bytes | None = None) -> bytes:
    """Serialise `response` to `request`: Content-Length always (but 1xx/204/304), Connection as
    needed, head only for HEAD."""
    status = response.status
    headers = response.headers
    try:
        block = _HEADER_BLOCKS.get(tuple(headers))
    except TypeError:
        block = None
    if block is None:
        block = _header_block(headers)
    line = _STATUS_LINE_BYTES.get(status) or _status_line(status).encode("latin-1")
    body = response.body
    if status in _NO_BODY_STATUS or status < 200:
        framing = b""
        body = b""
    else:
        framing = b"Content-Length: %d\r\n" % len(body)
    if response.close or request is None or not request.keep_alive:
        framing += b"Connection: close\r\n"
    elif request.version == "1.0":
        framing += b"Connection: keep-alive\r\n"
    if request is not None and request.method == "HEAD":
        body = b""
    if date is None:
        return b"%s%s%s\r\n%s" % (line, block, framing, body)
    return b"%s%s%sDate: %s\r\n\r\n%s" % (line, block, framing, date, body)


def timeout_error(phase: Phase, seconds: float) -> ProtocolError:
    """The 408 a driver answers when a started head (Phase.HEAD) or body (Phase.BODY) has not
    arrived within `seconds`; one wording for every driver."""
    which = "head" if phase is Phase.HEAD else "body"
    return ProtocolError(f"request {which} not received within {seconds:g} s", 408)


def error_response(err: ProtocolError) -> Response:
    """The plain-text response a driver writes for `err`."""
    line = _STATUS_LINES.get(err.status) or _status_line(err.status)
    text = f"{line[9:-2]}: {err.message}\n"
    return Response(
        err.status,
        [("Content-Type", "text/plain; charset=utf-8")],
        text.encode("utf-8"),
        close=err.close,
    )


def http_date(epoch_seconds: float) -> bytes:
    """IMF-fixdate, e.g. b"Sun, 06 Nov 1994 08:49:37 GMT"."""
    return formatdate(epoch_seconds, usegmt=True).encode("ascii")
