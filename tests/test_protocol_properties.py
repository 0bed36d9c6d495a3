"""Properties of app.protocol under hypothesis.

- Feeding the same bytes whole, one byte at a time, or in random splits gives the same requests
  or the same error (status and message), at the same point: the error is raised by the very
  byte that proves it, so the bytes before that one never raise and those up to it always do,
  however they are split.
- A head with an offending line is refused as soon as that line is complete, before the head
  ends: a second Content-Length, a bare CR, an obs-fold, junk, ... (RFC 9112 2.2, 5, 6).
- No input raises anything but ProtocolError.
- On generated valid requests, h11 (a test-only dependency) sees the same method, target,
  headers and body, and HeadScanner (the reference parser) the same head as parse_head.
"""

from __future__ import annotations

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.protocol import (
    CLOSED,
    NEED_DATA,
    Connection,
    ExpectContinue,
    HeadScanner,
    ProtocolError,
    Request,
    parse_head,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Error = tuple[int, str]
Outcome = tuple[tuple[Request, ...], Error | None]


def feed(pieces: list[bytes], *, eof: bool = True) -> Outcome:
    """Requests produced and the error (None if none) for `pieces`, then EOF when `eof`."""
    return feed_counting(pieces, eof=eof)[0]


def feed_counting(pieces: list[bytes], *, eof: bool = True) -> tuple[Outcome, int | None]:
    """As `feed`, and how many bytes had been fed when the error was raised (None: at EOF)."""
    conn = Connection()
    requests: list[Request] = []
    fed: int | None = 0
    try:
        for piece in [*pieces, b""] if eof else pieces:
            conn.receive_data(piece)
            fed = None if not piece or fed is None else fed + len(piece)
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    break
                if event is CLOSED:
                    return (tuple(requests), None), None
                if isinstance(event, ExpectContinue):
                    continue
                assert isinstance(event, Request)
                requests.append(event)
    except ProtocolError as err:
        assert err.status in {400, 413, 414, 417, 431, 501, 505}
        return (tuple(requests), (err.status, err.message)), fed
    assert not eof, "EOF must end in CLOSED or an error"
    return (tuple(requests), None), None


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return [p for p in pieces if p]


# --- generators ---

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(alphabet=TCHAR, min_size=1, max_size=12)
names = tokens.filter(
    lambda n: (
        n.lower()
        not in {"host", "content-length", "transfer-encoding", "connection", "expect", "te"}
    )
)
value_chars = st.sampled_from([chr(c) for c in range(0x21, 0x7F)])
values = st.builds(
    lambda a, b: (a + " " + b).strip(" ") if b else a,
    st.text(value_chars, max_size=15),
    st.text(value_chars, max_size=8),
)
# RFC 3986 pchar: unreserved, sub-delims, ":", "@" and well-formed %-escapes.
pchars = st.sampled_from([*"abcXYZ019-._~!$&'()*+,;=:@", "%2F", "%41", "%e9", "%00"])
paths = st.lists(st.lists(pchars, max_size=6).map("".join), max_size=4).map(
    lambda parts: "/" + "/".join(parts)
)
queries = st.one_of(
    st.just(""),
    st.lists(st.sampled_from([*"abc=&+/?019", "%2B", "%7e"]), max_size=10)
    .map(lambda chars: "?" + "".join(chars)),
)


@st.composite
def valid_requests(draw: st.DrawFn) -> tuple[bytes, str, str, list[tuple[str, str]], bytes]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH",
                                   draw(tokens.filter(lambda t: t != "CONNECT"))]))
    target = draw(paths) + draw(queries)
    fields = [("Host", draw(st.sampled_from(["example.com", "localhost:8080", "[::1]:80"])))]
    fields += draw(st.lists(st.tuples(names, values), max_size=8))
    body = draw(st.binary(max_size=40))
    chunked = draw(st.booleans()) and method != "GET"
    raw = [f"{method} {target} HTTP/1.1\r\n".encode()]
    for name, value in fields:
        raw.append(f"{name}:{draw(st.sampled_from(['', ' ', '  ', chr(9)]))}{value}\r\n".encode())
    if chunked:
        raw.append(b"Transfer-Encoding: chunked\r\n\r\n")
        rest = body
        while rest:
            n = draw(st.integers(1, len(rest)))
            raw.append(b"%x\r\n" % n + rest[:n] + b"\r\n")
            rest = rest[n:]
        raw.append(b"0\r\n\r\n")
        fields.append(("Transfer-Encoding", "chunked"))
    elif body or method == "POST":
        raw.append(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        fields.append(("Content-Length", str(len(body))))
    else:
        raw.append(b"\r\n")
    return b"".join(raw), method, target, fields, body


# Mutations that turn valid requests into hostile ones, so the invariants see errors too.
MUTATIONS = [b"\n", b"\r", b"\0", b" ", b"\t", b":", b"\r\n", b"0", b"\xff", b"HTTP/1.1", b";",
             b'"', b"%", b"\r\n ", b"\r\nContent-Length: 1\r\n", b"\r\nHost: h\r\n"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(valid_requests())[0] * draw(st.integers(1, 2)))
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(data)))
        action = draw(st.integers(0, 2))
        if action == 0:
            data[pos:pos] = draw(st.sampled_from(MUTATIONS))
        elif action == 1:
            del data[pos : pos + draw(st.integers(1, 3))]
        else:
            data[pos : pos + 1] = bytes([draw(st.integers(0, 255))])
    return bytes(data)


any_bytes = st.one_of(st.binary(max_size=200), mutated())


# --- properties ---


@SETTINGS
@given(data=any_bytes, cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_whole_bytewise_and_random_splits_agree(data: bytes, cuts: list[int]) -> None:
    whole = feed([data])
    assert feed(bytewise(data)) == whole
    assert feed(split_at(data, cuts)) == whole


@SETTINGS
@given(data=any_bytes, cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_an_error_is_raised_by_the_byte_that_proves_it(data: bytes, cuts: list[int]) -> None:
    (requests, error), fed = feed_counting(bytewise(data))
    if error is None or fed is None:  # no error, or one that only EOF proves: as whole, above
        assert feed([data]) == (requests, error)
        return
    proof = data[:fed]
    # Up to and including the byte that proves it, the error, however those bytes are split...
    assert feed([proof], eof=False) == (requests, error)
    assert feed(split_at(proof, cuts), eof=False) == (requests, error)
    # ...and one byte short of it, no error yet: the same requests, then a wait for more.
    assert feed([proof[:-1]], eof=False) == (requests, None)


# A line that no continuation can make valid, with what it is refused for (RFC 9112).
BAD_LINES = [
    (b"Content-Length: 1\r\nContent-Length: 2\r\n", "conflicting Content-Length"),  # 6.3 (5)
    (b"Content-Length: 1000000000000000000000\r\n", "1 to 19 ASCII digits"),  # 6.3 (5)
    (b" folded\r\n", "obsolete line folding"),  # 5.2
    (b"\tfolded\r\n", "obsolete line folding"),  # 5.2
    (b"junk between the lines\r\n", "without a colon"),  # 5.1
    (b"X-A : 1\r\n", "whitespace between"),  # 5.1
    (b"X-A: a\x00b\r\n", "NUL"),  # RFC 9110 5.5
    (b"X-A: a\rb\r\n", "bare CR"),  # 2.2
    (b"X-A: a\r\r\n", "bare CR"),  # 2.2
    (b"X-A: a\n", "bare LF"),  # 2.2
    (b"Host: second.test\r\n", "more than one Host"),  # 3.2
    (b"Transfer-Encoding: chunked, gzip\r\n", "not the final"),  # 6.3
    (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "more than once"),  # 7.1
    (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "both"),  # 6.1
    (b"Expect: teapot\r\n", "expectation"),  # RFC 9110 10.1.1
]


@SETTINGS
@given(request=valid_requests(), bad=st.sampled_from(BAD_LINES), where=st.integers(0, 10))
def test_a_bad_line_is_refused_as_soon_as_it_is_complete(
    request: tuple[bytes, str, str, list[tuple[str, str]], bytes],
    bad: tuple[bytes, str],
    where: int,
) -> None:
    raw = request[0]
    line, why = bad
    # Insert the bad line at a line boundary after Host and before the generated framing field
    # (the last field line, if any), so that it is the first offence.
    boundaries = [i + 2 for i in range(len(raw)) if raw.startswith(b"\r\n", i)]
    head_end = raw.index(b"\r\n\r\n") + 2
    framing = [raw.find(b"\r\n" + name) + 2 for name in (b"Content-Length:", b"Transfer-Encoding:")]
    last = min([head_end, *(i for i in framing if i >= 2)])
    starts = [i for i in boundaries[1:] if i <= last]
    at = starts[where % len(starts)]
    hostile = raw[:at] + line + raw[at:]
    whole = feed([hostile])
    assert whole[1] is not None and why in whole[1][1], whole
    # The bytes up to the end of the bad line are refused before any more arrive.
    assert feed([hostile[: at + len(line)]], eof=False) == whole
    (_, error), fed = feed_counting(bytewise(hostile))
    assert error == whole[1] and fed is not None and fed <= at + len(line)


@SETTINGS
@given(request=valid_requests(), cuts=st.lists(st.integers(0, 10_000), max_size=5))
def test_valid_requests_parse_whatever_the_split(
    request: tuple[bytes, str, str, list[tuple[str, str]], bytes], cuts: list[int]
) -> None:
    raw, method, target, fields, body = request
    requests, status = feed(split_at(raw, cuts))
    assert status is None
    (req,) = requests
    assert (req.method, req.target, req.body) == (method, target, body)
    assert req.headers == tuple((n.lower(), v) for n, v in fields)


@SETTINGS
@given(request=valid_requests())
def test_same_as_h11(request: tuple[bytes, str, str, list[tuple[str, str]], bytes]) -> None:
    raw = request[0]
    ours, status = feed([raw])
    assert status is None
    (req,) = ours

    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    body = b""
    while True:
        nxt = conn.next_event()
        if isinstance(nxt, h11.Data):
            body += nxt.data
        else:
            assert isinstance(nxt, h11.EndOfMessage)
            break
    assert req.method == event.method.decode()
    assert req.target == event.target.decode()
    assert req.headers == tuple((n.decode(), v.decode("latin-1")) for n, v in event.headers)
    assert req.body == body


@SETTINGS
@given(data=any_bytes)
def test_only_protocol_errors_escape(data: bytes) -> None:
    conn = Connection(max_body_size=64)
    conn.receive_data(data)
    try:
        for _ in range(len(data) + 2):
            event = conn.next_event()
            if event is NEED_DATA or event is CLOSED:
                break
    except ProtocolError:
        pass


@SETTINGS
@given(data=st.one_of(valid_requests().map(lambda r: r[0]), mutated()))
def test_the_reference_parser_and_the_fast_path_agree(data: bytes) -> None:
    end = data.find(b"\r\n\r\n")
    head = data[: end + 4] if end >= 0 else data + b"\r\n\r\n"

    def parse(how: str) -> object:
        try:
            return parse_head(head) if how == "fast" else HeadScanner().finish(head)
        except ProtocolError as err:
            return (err.status, err.message)

    assert parse("fast") == parse("reference")
