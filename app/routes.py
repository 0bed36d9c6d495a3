"""What calcserve answers: one pure function from a parsed `Request` to a `Response`.

| request                                   | answer                                              |
|-------------------------------------------|-----------------------------------------------------|
| GET/HEAD /                                | the calculator page                                 |
| GET/HEAD /static/NAME                     | an asset, with ETag (304 on If-None-Match)          |
| POST /calculate, form `expr=...`          | the page with the result if the client prefers HTML |
|                                           | by its Accept q-values, else JSON                   |
| POST /calculate, application/json         | JSON                                                |
| POST /calculate, text/plain               | the result as text                                  |
| GET/HEAD /calculate?expr=...              | JSON (text when Accept prefers text/plain)          |
| GET/HEAD /healthz                         | 200 ok                                              |
| OPTIONS * (or a known path)               | 200, empty, Allow: the server's (the path's) methods|
| a method RFC 9110 does not define         | 501                                                 |
| anything else                             | 404, or 405 with Allow for a known path             |

Paths match after the %-escapes of unreserved characters are decoded (RFC 3986 6.2.2.2:
`/%63alculate` is `/calculate`); no other escape is ever decoded, so `%2F`, `%00` and the like
never become path structure.

Malformed client input (no `expr`, bad JSON, a bad percent-escape, a body that is not UTF-8) is a
400, an unsupported media type a 415, an expression the calculator refuses a 422 carrying
`{"error": {"kind", "message", "position", "length"}}` (or the page with the error, in HTML mode).

`Routes` is handed its static assets already loaded (`build_assets` / `load_assets`), so it does
no I/O and every mode shares it. `handle` never raises for client input; an exception from it is a
bug, which drivers answer with `internal_error_response()`.
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from functools import partial
from json.encoder import encode_basestring
from pathlib import Path
from typing import Final, TypeVar, overload

from app.calculator import CalcError, LimitError, OverBudget, Result, evaluate
from app.page import render_page
from app.protocol import Request, Response
from app.work import Job, Outcome, Shed, Stopped

__all__ = [
    "STATIC_DIR",
    "Asset",
    "Deferred",
    "Routes",
    "build_assets",
    "internal_error_response",
    "load_assets",
    "parse_form",
]

# Strategy:
#
# Dispatch is a dict lookup on the path; only /static/ needs a prefix test, and its NAME must
# match a plain file-name pattern and be a key of the assets mapping, so no request can name
# anything but a file we loaded at start-up. A path with a "%" first has the escapes of unreserved
# characters decoded, which RFC 3986 makes equivalent to the characters themselves; every other
# escape stays as it is ("%2F" is not "/", "%25" not "%", so nothing is ever decoded twice), and
# "." / ".." are names like any other (never dot-segments), so "%2e%2e" opens no parent folder.
# The method is looked at only when the path does not take it: OPTIONS answers Allow, a method
# RFC 9110 does not define is 501, a defined one 405 with Allow.
# Each /calculate variant reduces to one `expr` string plus an output mode (html, json, text); one
# function evaluates and renders for all of them. Client mistakes raise `_Reject` inside and
# become plain-text 400/415 answers in `handle`.
#
# Per request, the work that depends only on a header's text (Accept negotiation, Content-Type
# parsing) is remembered per distinct text in small bounded memos: clients send the same few
# values over and over. Form bodies are unescaped with one split on "%" and a table of the
# 484 hex pairs; the answer to a Result is JSON built from its four fields directly.

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"

# Media types by file suffix; text types say their charset so no browser has to sniff.
CONTENT_TYPES: Final[Mapping[str, str]] = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".webmanifest": "application/manifest+json",
    ".woff2": "font/woff2",
}
_DEFAULT_TYPE: Final = "application/octet-stream"

# A static NAME: a plain file name, starting with a letter or digit; nothing that a file system
# or a percent-decoder could read as another path ("..", "/", "\\", "%2e", NUL).
_ASSET_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*")

# RFC 9110 9.1: the methods this server implements for some resource, in the order Allow lists
# them, and those it recognises: RFC 9110's own plus PATCH (RFC 5789). A recognised method that
# a path does not take is 405 with Allow (15.5.6: "known by the origin server but not supported by
# the target resource"); any other method is 501 (15.6.2: "does not recognize the request
# method"). CONNECT never gets here: the protocol core answers it 501 (not a proxy).
SERVER_METHODS: Final = ("GET", "HEAD", "POST", "OPTIONS")
KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
_READ_METHODS: Final = frozenset({"GET", "HEAD"})

# RFC 3986 2.3: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~". Their escapes, in either
# case of hex digit ("%2e", "%2E"), decoded for matching (6.2.2.2); no other escape is.
_UNRESERVED: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_UNRESERVED_ESCAPES: Final[Mapping[str, str]] = {
    f"{hi}{lo}": char
    for char in _UNRESERVED
    for hi in {f"{ord(char):02X}"[0], f"{ord(char):02x}"[0]}
    for lo in {f"{ord(char):02X}"[1], f"{ord(char):02x}"[1]}
}

_JSON: Final = "application/json"
_TEXT: Final = "text/plain; charset=utf-8"
_HTML: Final = "text/html; charset=utf-8"
_NOSNIFF: Final = ("X-Content-Type-Options", "nosniff")
_NO_STORE: Final = ("Cache-Control", "no-store")
_VARY: Final = ("Vary", "Accept")
# The page has no inline script or style (tests/test_page.py checks), so it can forbid them all:
# an expression echoed into it can never run, even if escaping were ever to fail.
_CSP: Final = (
    "Content-Security-Policy",
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
)

# media-type = type "/" subtype parameters ; parameters = *( OWS ";" OWS [ parameter ] )
_TOKEN: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA_TYPE: Final = re.compile(rf"[ \t]*({_TOKEN})/({_TOKEN})[ \t]*((?:;.*)?)")
_PARAMETER: Final = re.compile(
    rf'[ \t]*({_TOKEN})[ \t]*=[ \t]*({_TOKEN}|"(?:[^"\\]|\\.)*")[ \t]*'
)
_QVALUE: Final = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
_UTF8_NAMES: Final = frozenset({"utf-8", "utf8", "us-ascii"})


@dataclass(frozen=True, slots=True)
class Asset:
    """A static file, loaded once: its bytes, media type and strong entity tag."""

    body: bytes
    content_type: str
    etag: str


def build_assets(files: Mapping[str, bytes]) -> dict[str, Asset]:
    """Assets keyed by file name (relative to STATIC_DIR), with media type and ETag."""
    assets: dict[str, Asset] = {}
    for name, body in files.items():
        suffix = name[name.rfind(".") :].lower() if "." in name else ""
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        assets[name] = Asset(body, CONTENT_TYPES.get(suffix, _DEFAULT_TYPE), etag)
    return assets


def load_assets(directory: Path = STATIC_DIR) -> dict[str, Asset]:
    """Read every regular file directly inside `directory` (blocking; for the legacy drivers)."""
    files = {
        path.name: path.read_bytes()
        for path in sorted(directory.iterdir())
        if path.is_file() and _ASSET_NAME.fullmatch(path.name)
    }
    return build_assets(files)


def internal_error_response() -> Response:
    """The generic 500 a driver sends when `Routes.handle` raised (a bug, logged by the driver)."""
    return Response(
        500, [("Content-Type", _TEXT), _NOSNIFF], b"500 Internal Server Error\n", close=False
    )


@dataclass(frozen=True, slots=True)
class Deferred:
    """A /calculate too costly for the serving thread: the `job` for the pool, and the pure
    `render` that turns its outcome (whatever it is: result, error, shed, stopped) into the
    response. Returned by `Routes.handle` only when it was given a budget."""

    job: Job
    render: Callable[[Outcome], Response]


class _Reject(Exception):
    """A client mistake found while reading a /calculate request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_form(data: bytes) -> dict[str, list[str]]:
    """Decode application/x-www-form-urlencoded exactly: "+" is a space, %HH escapes are UTF-8.

    Raises ValueError on a malformed escape or bytes that are not UTF-8.
    """
    fields: dict[str, list[str]] = {}
    for part in data.split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        fields.setdefault(_form_unquote(name), []).append(_form_unquote(value))
    return fields


_HEX_DIGITS: Final = "0123456789abcdefABCDEF"
# "%HH" -> the byte: every pair of hex digits, either case (22 x 22 keys).
_HEX_PAIRS: Final = {
    (a + b).encode("ascii"): bytes((int(a + b, 16),)) for a in _HEX_DIGITS for b in _HEX_DIGITS
}


def _form_unquote(data: bytes) -> str:
    """Form-decode one name or value: "+" is a space, "%HH" the byte HH; then strict UTF-8.

    Raises ValueError for a "%" not followed by two hex digits, or bytes that are not UTF-8.

    Strategy: a costly expression arrives as a form body of thousands of escapes, and it is
    decoded on the serving thread even when the answer is a 429, so this runs at C speed:
    quoted-printable decoding (binascii.a2b_qp) is the same job with "=" for "%". Each "=" of
    the data is first written "=3D" (which decodes back to "="), and every "%" becomes "=".
    A valid escape then shrinks the text by exactly two bytes and anything else by fewer, so
    the decoded length says whether every escape was valid. A soft line break ("=" before a
    CR or LF) is the one sequence a2b_qp drops more of, so data with CR or LF (never sent by a
    browser, which escapes them) takes the plain loop instead. ~6x faster on such a body.
    """
    data = data.replace(b"+", b" ")
    escapes = data.count(b"%")
    if escapes:
        if b"\r" in data or b"\n" in data:
            data = _unquote_loop(data)
        else:
            equals = data.count(b"=")
            marked = data.replace(b"=", b"=3D").replace(b"%", b"=")
            data = binascii.a2b_qp(marked)
            if len(data) != len(marked) - 2 * (escapes + equals):
                raise ValueError("malformed percent-escape")
    return data.decode("utf-8")  # strict: a UnicodeDecodeError is a ValueError


def _unquote_loop(data: bytes) -> bytes:
    """Percent-decode `data` one escape at a time (the reference the fast path must agree with)."""
    parts = data.split(b"%")
    out = [parts[0]]
    pairs = _HEX_PAIRS
    for part in parts[1:]:
        byte = pairs.get(part[:2])
        if byte is None:  # "%" not followed by two hex digits
            raise ValueError("malformed percent-escape")
        out.append(byte)
        out.append(part[2:])
    return b"".join(out)


# Memos of what a header's text means: bounded in entries and in the length of the texts kept.
MEMO_SIZE: Final = 256
MEMO_MAX_TEXT: Final = 512
_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


def _memo_put(memo: dict[_K, _V], key: _K, value: _V) -> None:
    if len(memo) >= MEMO_SIZE:
        with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # a racing eviction
            del memo[next(iter(memo))]
    memo[key] = value


_MEDIA_TYPES: dict[str, tuple[str, Mapping[str, str]]] = {}


def _content_type(value: str) -> tuple[str, Mapping[str, str]]:
    """`_media_type(value)`, remembered for short values (never mutate the parameters)."""
    known = _MEDIA_TYPES.get(value)
    if known is None:
        known = _media_type(value)  # a malformed value raises: only good ones are remembered
        if len(value) <= MEMO_MAX_TEXT:
            _memo_put(_MEDIA_TYPES, value, known)
    return known


def _media_type(value: str) -> tuple[str, dict[str, str]]:
    """("type/subtype" lower-cased, {param: value}) or raise _Reject(415)."""
    m = _MEDIA_TYPE.fullmatch(value)
    if m is None:
        raise _Reject(415, "malformed Content-Type")
    params: dict[str, str] = {}
    for item in m.group(3).split(";")[1:]:
        if not item.strip(" \t"):
            continue
        p = _PARAMETER.fullmatch(item)
        if p is None:
            raise _Reject(415, "malformed Content-Type parameter")
        raw = p.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[p.group(1).lower()] = raw
    return f"{m.group(1)}/{m.group(2)}".lower(), params


def _accept_quality(accept: str | None, media: str) -> float:
    """The q-value `accept` gives `media` (RFC 9110 12.5.1: the most specific range wins)."""
    if accept is None:
        return 1.0
    kind = media.split("/", 1)[0]
    best_rank = -1
    best_q = 0.0
    for item in accept.split(","):
        item_media, params = _parse_accept_item(item)
        if item_media is None:
            continue
        if item_media == media:
            rank = 2
        elif item_media == f"{kind}/*":
            rank = 1
        elif item_media == "*/*":
            rank = 0
        else:
            continue
        if rank > best_rank:
            best_rank = rank
            q = params.get("q", "1")
            best_q = float(q) if _QVALUE.fullmatch(q) else 0.0
    return best_q


def _parse_accept_item(item: str) -> tuple[str | None, dict[str, str]]:
    if not item.strip(" \t"):
        return None, {}
    try:
        return _media_type(item)
    except _Reject:
        return None, {}


_PREFERENCES: dict[tuple[str, str, str], bool] = {}


def _prefers(accept: str | None, media: str, over: str) -> bool:
    """True when `accept` rates `media` strictly above `over`."""
    if accept is None:  # no Accept: everything is acceptable alike
        return False
    key = (accept, media, over)
    known = _PREFERENCES.get(key)
    if known is None:
        known = _accept_quality(accept, media) > _accept_quality(accept, over)
        if len(accept) <= MEMO_MAX_TEXT:
            _memo_put(_PREFERENCES, key, known)
    return known


def _result_json(result: Result) -> bytes:
    """`_json_response`'s body for `result.to_json()`, built directly (same bytes)."""
    fraction = result.fraction
    return (
        '{"expr":' + encode_basestring(result.expr)
        + ',"result":' + encode_basestring(result.display)
        + (',"exact":true,"fraction":' if result.exact else ',"exact":false,"fraction":')
        + ("null" if fraction is None else encode_basestring(fraction))
        + "}\n"
    ).encode("utf-8")


def _check_charset(params: Mapping[str, str]) -> None:
    charset = params.get("charset")
    if charset is not None and charset.lower() not in _UTF8_NAMES:
        raise _Reject(415, f"unsupported charset {charset!r} (use utf-8)")


def _text_response(status: int, text: str, *extra: tuple[str, str]) -> Response:
    return Response(status, [("Content-Type", _TEXT), _NOSNIFF, *extra], text.encode("utf-8"))


def _json_response(status: int, value: object) -> Response:
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(status, [("Content-Type", _JSON), _NOSNIFF, _NO_STORE, _VARY], body + b"\n")


_Handler = Callable[[Request, "int | None"], "Response | Deferred"]


class Routes:
    """The calculator's request handler over a fixed set of static assets.

    Callers use `handle(request) -> Response`; it does no I/O and never raises for client input.
    A driver with a calculation pool passes a work budget, `handle(request, budget)`, and gets a
    `Deferred` instead of a response for a calculation that would cost more than `budget`
    (`app.calculator.INLINE_BUDGET`, or 0 to defer every calculation).
    """

    def __init__(self, assets: Mapping[str, Asset]) -> None:
        self.assets = dict(assets)
        index = self.assets.get("index.html")
        self._template = index.body.decode("utf-8") if index is not None else None
        self._blank: bytes | None = None  # the page without expression, rendered once
        self._exact: dict[str, tuple[frozenset[str], _Handler]] = {
            "/": (frozenset({"GET", "HEAD"}), self._page),
            "/calculate": (frozenset({"GET", "HEAD", "POST"}), self._calculate),
            "/healthz": (_READ_METHODS, self._healthz),
        }

    @overload
    def handle(self, request: Request) -> Response: ...
    @overload
    def handle(self, request: Request, budget: int | None) -> Response | Deferred: ...

    def handle(self, request: Request, budget: int | None = None) -> Response | Deferred:
        """The response to `request`; with a `budget`, a `Deferred` for a costlier calculation."""
        path = request.path
        route = self._exact.get(path)
        if route is None and "%" in path:  # the exact path first: no cost when it matches
            path = _match_form(path)
            route = self._exact.get(path)
        if route is not None:
            methods, handler = route
            if request.method not in methods:
                return _other_method(request.method, methods)
            try:
                return handler(request, budget)
            except _Reject as reject:
                return _text_response(reject.status, f"{reject.status} {reject.message}\n")
        if path.startswith("/static/"):
            name = path[8:]
            asset = self.assets.get(name)
            if asset is not None and _ASSET_NAME.fullmatch(name):
                if request.method not in _READ_METHODS:
                    return _other_method(request.method, _READ_METHODS)
                return _static(request, asset)
        if request.method not in KNOWN_METHODS:
            return _not_implemented()
        if path == "*" and request.method == "OPTIONS":  # RFC 9110 9.3.7: the server as a whole
            return _options(frozenset(SERVER_METHODS))
        return _text_response(404, "404 Not Found\n")

    # --- handlers ---

    def _healthz(self, request: Request, budget: int | None = None) -> Response:
        return _text_response(200, "ok", ("Cache-Control", "no-store"))

    def _page(self, request: Request, budget: int | None = None) -> Response:
        blank = self._blank
        if blank is None:  # render_page is pure: the empty form is the same bytes every time
            blank = self._blank = self._render(200, "").body
        return Response(
            200,
            [("Content-Type", _HTML), _NOSNIFF, ("Cache-Control", "no-cache"), _VARY, _CSP],
            blank,
        )

    def _render(
        self, status: int, expr: str, result: Result | None = None, error: CalcError | None = None,
        notice: tuple[str, str] | None = None,
    ) -> Response:
        if self._template is None:  # a deployment without index.html: say so, do not crash
            raise RuntimeError("static asset index.html is missing")
        body = render_page(self._template, expr=expr, result=result, error=error, notice=notice)
        return Response(
            status,
            [("Content-Type", _HTML), _NOSNIFF, ("Cache-Control", "no-cache"), _VARY, _CSP],
            body,
        )

    def _calculate(self, request: Request, budget: int | None) -> Response | Deferred:
        accept = request.header("accept")
        if request.method != "POST":
            values = _form_values(request.query.encode("latin-1"))
            mode = "text" if _prefers(accept, "text/plain", _JSON) else "json"
            return self._answer(values, mode, budget)
        content_type = request.header("content-type")
        if content_type is None:
            raise _Reject(415, "POST /calculate needs a Content-Type")
        media, params = _content_type(content_type)
        if media == "application/x-www-form-urlencoded":
            if params:
                _check_charset(params)
            mode = "html" if _prefers(accept, "text/html", _JSON) else "json"
            return self._answer(_form_values(request.body), mode, budget)
        if media == _JSON:
            _check_charset(params)
            return self._answer(_json_expr(request.body), "json", budget)
        if media == "text/plain":
            _check_charset(params)
            try:
                expr = request.body.decode("utf-8")
            except UnicodeDecodeError:
                raise _Reject(400, "body is not UTF-8") from None
            return self._answer(expr, "text", budget)
        raise _Reject(415, f"unsupported media type {media} (use form, JSON or text/plain)")

    def _answer(self, expr: str, mode: str, budget: int | None) -> Response | Deferred:
        try:
            if budget is None:
                result = evaluate(expr)
            elif budget > 0:
                result = evaluate(expr, budget=budget)
            else:  # no inline try at all (the client has work in the pool already)
                raise OverBudget
        except OverBudget:
            return Deferred(Job(expr), partial(self._outcome, expr, mode))
        except CalcError as error:
            return self._calc_error(expr, mode, error)
        return self._result(expr, mode, result)

    def _outcome(self, expr: str, mode: str, outcome: Outcome) -> Response:
        """The response to a deferred calculation, from whatever its job came back with."""
        if isinstance(outcome, Result):
            return self._result(expr, mode, outcome)
        if isinstance(outcome, CalcError):
            return self._calc_error(expr, mode, outcome)
        if isinstance(outcome, Stopped) and outcome.reason == "timeout":
            limit = LimitError(
                f"too much work: stopped after {outcome.limit * 1000:g} ms of calculation",
                0, len(expr))
            return self._calc_error(expr, mode, limit)
        if isinstance(outcome, Shed):
            status, retry = outcome.status, str(outcome.retry_after)
            if status == 429:
                kind = "too_many_requests"
                message = ("you have as many costly calculations waiting as one client may; "
                           f"try again in {retry} s")
            else:
                kind = "unavailable"
                message = f"the server is busy with costly calculations; try again in {retry} s"
            extra: tuple[tuple[str, str], ...] = (("Retry-After", retry),)
        else:  # Stopped(lost): the worker died under this job, and only this job
            status, kind = 500, "internal"
            message = "the calculation's worker process stopped unexpectedly; try again"
            extra = ()
        if mode == "json":
            response = _json_response(status, {"error": {"kind": kind, "message": message}})
            response.headers.extend(extra)
        elif mode == "html":  # a browser's form post: the page, saying what happened
            response = self._render(status, expr, notice=(kind, message))
            response.headers.extend(extra)
        else:
            response = _text_response(status, f"{status} {message}\n", _NO_STORE, *extra)
        response.reason = kind  # for the driver's metrics; never sent
        return response

    def _calc_error(self, expr: str, mode: str, error: CalcError) -> Response:
        if mode == "html":
            response = self._render(422, expr, error=error)
        elif mode == "text":
            response = _text_response(
                422, f"error: {error.kind}: {error.message} (at {error.position})\n", _VARY
            )
        else:
            response = _json_response(422, {"error": error.to_json()})
        response.reason = error.kind  # for the driver's metrics; never sent
        return response

    def _result(self, expr: str, mode: str, result: Result) -> Response:
        if mode == "html":
            return self._render(200, expr, result=result)
        if mode == "text":
            return _text_response(200, result.display + "\n", _NO_STORE, _VARY)
        return Response(200, [("Content-Type", _JSON), _NOSNIFF, _NO_STORE, _VARY],
                        _result_json(result))


def _form_values(data: bytes) -> str:
    try:
        if data.startswith(b"expr=") and b"&" not in data:  # the usual form: one field
            return _form_unquote(data[5:])
        fields = parse_form(data)
    except ValueError as exc:
        raise _Reject(400, f"bad form encoding: {exc}") from None
    values = fields.get("expr")
    if not values:
        raise _Reject(400, "missing expr")
    return values[0]


def _json_expr(body: bytes) -> str:
    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the C stack
        raise _Reject(400, "body is not valid UTF-8 JSON") from None
    if not isinstance(value, dict) or not isinstance(value.get("expr"), str):
        raise _Reject(400, 'JSON body must be an object with a string "expr"')
    expr: str = value["expr"]
    return expr


def _match_form(path: str) -> str:
    """`path` with the escapes of unreserved characters decoded (RFC 3986 6.2.2.2), and only
    those: the protocol core has already proved every "%" starts a well-formed escape."""
    parts = path.split("%")
    out = [parts[0]]
    for part in parts[1:]:
        char = _UNRESERVED_ESCAPES.get(part[:2])
        out.append("%" + part if char is None else char + part[2:])
    return "".join(out)


def _allow(methods: frozenset[str]) -> tuple[str, str]:
    # RFC 9110 10.2.1: Allow lists the methods the target resource supports; OPTIONS is one.
    return ("Allow", ", ".join(m for m in SERVER_METHODS if m in methods or m == "OPTIONS"))


def _other_method(method: str, methods: frozenset[str]) -> Response:
    """The answer when a path does not take `method`: OPTIONS, 501 or 405 (RFC 9110 9.1)."""
    if method == "OPTIONS":
        return _options(methods)
    if method not in KNOWN_METHODS:
        return _not_implemented()
    return _text_response(405, "405 Method Not Allowed\n", _allow(methods))


def _options(methods: frozenset[str]) -> Response:
    # RFC 9110 9.3.7: a successful answer says Allow and, with no content, MUST send
    # Content-Length: 0, which 8.6 forbids in a 204: so 200 with an empty body (render adds it).
    return Response(200, [_allow(methods), _NOSNIFF])


def _not_implemented() -> Response:
    # RFC 9110 9.1: a request method that is unrecognized SHOULD get 501.
    return _text_response(501, "501 Not Implemented\n")


def _static(request: Request, asset: Asset) -> Response:
    headers = [
        ("Content-Type", asset.content_type),
        _NOSNIFF,
        ("ETag", asset.etag),
        ("Cache-Control", "no-cache"),
    ]
    if_none_match = request.header("if-none-match")
    if if_none_match is not None and _etag_matches(if_none_match, asset.etag):
        return Response(304, headers)
    return Response(200, headers, asset.body)


def _etag_matches(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/ prefixes are ignored."""
    for candidate in header.split(","):
        candidate = candidate.strip(" \t")
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False
