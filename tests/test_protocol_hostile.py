"""Hostile requests against the protocol core, each with the status it must get.

Sources: gunicorn tests/requests/invalid (named by file), llhttp test/request/*.md, aiohttp's
parser CVE tests (GHSA ids), http-garden TROPHIES.md, and our own (issue 3 / issue 7). Every case
is fed whole and one byte at a time; every error closes the connection, and a clean request on a
fresh connection is still parsed afterwards (the core keeps no global state).
"""

from __future__ import annotations

import pytest

from app.protocol import (
    CLOSED,
    NEED_DATA,
    Connection,
    ExpectContinue,
    ProtocolError,
    Request,
)

H = b"Host: example.com\r\n"
POST = b"POST / HTTP/1.1\r\n" + H
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"

CASES: list[tuple[str, bytes, int]] = [
    # --- request line ---
    ("gunicorn 002: method with space", b"GET HTTP/1.1 /\r\n" + H + b"\r\n", 400),
    ("gunicorn 003: lower-case version", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    ("gunicorn version_01: HTTP/0.1", b"GET / HTTP/0.1\r\n" + H + b"\r\n", 505),
    ("gunicorn version_02: HTTP/1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505),
    ("gunicorn version_03: HTTP/1.10", b"GET / HTTP/1.10\r\n" + H + b"\r\n", 400),
    ("issue 3: HTTP/1.32", b"GET / HTTP/1.32\r\n" + H + b"\r\n", 400),
    ("HTTP/2.0 over h1", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("PRI preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    ("HTTP/1.1 with trailing space", b"GET / HTTP/1.1 \r\n" + H + b"\r\n", 400),
    ("HTTP/1.1 without slash", b"GET / HTTP1.1\r\n" + H + b"\r\n", 400),
    ("missing version (HTTP/0.9)", b"GET /\r\n" + H + b"\r\n", 400),
    ("gunicorn method_01: method with colon", b"GE:T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("gunicorn method_02: method with paren", b"GET( / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("llhttp: method with NUL", b"G\0ET / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("double space", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("leading space", b" GET / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("tab as separator", b"GET\t/\tHTTP/1.1\r\n" + H + b"\r\n", 400),
    ("gunicorn nonascii_01: non-ASCII method", b"G\xc3\x89T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("non-ASCII in target", b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("space in target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("DEL in target", b"GET /a\x7f HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("fragment in target", b"GET /a#frag HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("gunicorn rfc9112_target_relative_01", b"GET a/b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("gunicorn rfc9112_target_asterisk_non_options", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    (
        "gunicorn rfc9112_target_authority_non_connect",
        b"GET example.com:443 HTTP/1.1\r\n" + H + b"\r\n",
        400,
    ),
    ("absolute-form without authority", b"GET http:///x HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-form javascript:", b"GET javascript:x HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("request line bare LF", b"GET / HTTP/1.1\n" + H + b"\r\n", 400),
    ("request line bare CR", b"GET / HTTP/1.1\r" + H + b"\r\n", 400),
    ("only LF line endings", b"GET / HTTP/1.1\nHost: x\n\n", 400),
    ("request line 9 KiB", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("request line never ends", b"GET /" + b"a" * 20_000, 414),
    # --- header syntax ---
    ("issue 3: space before colon", POST + b"Content-Length : 5\r\n\r\nhello", 400),
    ("tab before colon", b"GET / HTTP/1.1\r\n" + H + b"X-A\t: b\r\n\r\n", 400),
    ("gunicorn obs_fold_01", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n\tb\r\n\r\n", 400),
    ("obs-fold with space", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", 400),
    ("first header folded", b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400),
    ("header bare LF", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\n\r\n", 400),
    ("header bare CR", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rX-B: b\r\n\r\n", 400),
    ("NUL in header value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\0b\r\n\r\n", 400),
    ("NUL in header name", b"GET / HTTP/1.1\r\n" + H + b"X\0A: b\r\n\r\n", 400),
    ("gunicorn rfc9110_field_value_ctl_bel", b"GET / HTTP/1.1\r\n" + H + b"X: a\x07b\r\n\r\n", 400),
    ("gunicorn rfc9110_field_value_ctl_del", b"GET / HTTP/1.1\r\n" + H + b"X: a\x7fb\r\n\r\n", 400),
    ("vertical tab in value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x0bb\r\n\r\n", 400),
    (
        "gunicorn nonascii_04: obs-text in name",
        b"GET / HTTP/1.1\r\n" + H + b"X\xff: 3\r\n\r\n",
        400,
    ),
    ("name with space", b"GET / HTTP/1.1\r\n" + H + b"X A: b\r\n\r\n", 400),
    ("name with slash", b"GET / HTTP/1.1\r\n" + H + b"X/A: b\r\n\r\n", 400),
    ("empty name", b"GET / HTTP/1.1\r\n" + H + b": b\r\n\r\n", 400),
    ("no colon", b"GET / HTTP/1.1\r\n" + H + b"NoColon\r\n\r\n", 400),
    ("101 header fields", b"GET / HTTP/1.1\r\n" + H + b"X: y\r\n" * 100 + b"\r\n", 431),
    (
        "gunicorn limit_header: 17 KiB field",
        b"GET / HTTP/1.1\r\n" + H + b"X: " + b"a" * 17_000,
        431,
    ),
    ("head grows forever", b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 5_000, 431),
    # --- Host ---
    ("issue 3: Host missing", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("issue 3: Host doubled", b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", 400),
    ("Host doubled in 1.0", b"GET / HTTP/1.0\r\n" + H + H + b"\r\n", 400),
    ("Host with space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("Host with userinfo", b"GET / HTTP/1.1\r\nHost: user@evil\r\n\r\n", 400),
    ("Host with path", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("Host with bad port", b"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400),
    # --- Content-Length ---
    ("issue 3: CL +5", POST + b"Content-Length: +5\r\n\r\nhello", 400),
    ("issue 3: CL 1_0", POST + b"Content-Length: 1_0\r\n\r\n0123456789", 400),
    ("issue 3: two different CLs", POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    ("gunicorn prefix_03: CL '0 1'", POST + b"Content-Length: 0 1\r\n\r\nx", 400),
    ("CL -1", POST + b"Content-Length: -1\r\n\r\n", 400),
    ("CL 0x10", POST + b"Content-Length: 0x10\r\n\r\n", 400),
    ("CL 1e3", POST + b"Content-Length: 1e3\r\n\r\n", 400),
    ("CL list 5,5", POST + b"Content-Length: 5,5\r\n\r\nhello", 400),
    ("CL empty", POST + b"Content-Length:\r\n\r\n", 400),
    ("CL fullwidth digit", POST + b"Content-Length: \xef\xbc\x95\r\n\r\nhello", 400),
    ("CL superscript digit (latin-1)", POST + b"Content-Length: \xb9\r\n\r\nh", 400),
    ("CL 20 digits", POST + b"Content-Length: 99999999999999999999\r\n\r\n", 400),
    ("CL over the body limit", POST + b"Content-Length: 9999999999\r\n\r\n", 413),
    (
        "CL in TE game: CL then TE",
        POST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    # --- Transfer-Encoding ---
    ("issue 3: TE chunked, gzip", POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ("TE gzip, chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ("TE identity", POST + b"Transfer-Encoding: identity\r\n\r\n", 400),
    ("TE chunked twice in one field", POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
    (
        "TE two fields",
        POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("TE chunkedx", POST + b"Transfer-Encoding: chunkedx\r\n\r\n", 400),
    ("TE empty", POST + b"Transfer-Encoding:\r\n\r\n", 400),
    (
        "gunicorn chunked_whitespace: VT before chunked",
        POST + b"Transfer-Encoding: identity, \x0bchunked\r\n\r\n",
        400,
    ),
    (
        "gunicorn rfc9112_smuggle_cl_te_chunked",
        POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    # --- chunked framing ---
    ("issue 3: chunk size 0x5", CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("gunicorn rfc9112_chunked_size_plus_sign", CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n", 400),
    ("gunicorn rfc9112_chunked_size_minus_sign", CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size with underscore", CHUNKED + b"1_0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n", 400),
    ("chunk size leading space", CHUNKED + b" 5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size trailing space", CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size empty", CHUNKED + b"\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size non-ASCII digit", CHUNKED + b"\xd9\xa5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size overflow (llhttp)", CHUNKED + b"ffffffffffffffffff\r\n", 400),
    ("chunk size too big for the limit", CHUNKED + b"7fffffff\r\n", 413),
    ("issue 3: chunk ext 5;ext\\rX", CHUNKED + b"5;ext\rX\r\nhello\r\n0\r\n\r\n", 400),
    ("gunicorn: LF inside chunk extension", CHUNKED + b"5;a\nb\r\nhello\r\n0\r\n\r\n", 400),
    ("waitress: chunk size 5\\n", CHUNKED + b"5\n\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk ext without name", CHUNKED + b"5;\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk ext unterminated quote", CHUNKED + b'5;a="b\r\nhello\r\n0\r\n\r\n', 400),
    ("chunk ext NUL", CHUNKED + b"5;a=\0\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk line 5 KiB of extensions", CHUNKED + b"5" + b";a=b" * 1300 + b"\r\n", 400),
    ("chunk data too long", CHUNKED + b"5\r\nhello!\r\n0\r\n\r\n", 400),
    ("gunicorn chunked_01: data then LF", CHUNKED + b"5\r\nhello\n0\r\n\r\n", 400),
    ("chunk data then CR only", CHUNKED + b"5\r\nhello\r0\r\n\r\n", 400),
    ("gunicorn rfc9112_chunked_missing_final_crlf", CHUNKED + b"5\r\nhello\r\n0\r\n", 400),
    (
        "endless chunked body",
        CHUNKED + b"1000\r\n" + b"x" * 4096 + b"\r\n" * 1 + b"100000\r\n",
        413,
    ),
    # --- trailers ---
    ("gunicorn rfc9110_trailer_forbidden_cl", CHUNKED + b"0\r\nContent-Length: 5\r\n\r\n", 400),
    ("gunicorn rfc9110_trailer_forbidden_te", CHUNKED + b"0\r\nTransfer-Encoding: x\r\n\r\n", 400),
    ("gunicorn rfc9110_trailer_forbidden_host", CHUNKED + b"0\r\nHost: evil\r\n\r\n", 400),
    ("trailer space before colon", CHUNKED + b"0\r\nX : y\r\n\r\n", 400),
    ("trailer obs-fold", CHUNKED + b"0\r\nX: y\r\n z\r\n\r\n", 400),
    ("trailer bare LF", CHUNKED + b"0\r\nX: y\n\r\n", 400),
    ("trailer section too big", CHUNKED + b"0\r\n" + b"X: " + b"y" * 17_000, 431),
    ("101 trailer fields", CHUNKED + b"0\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
    # --- expectations, EOF, pipelining ---
    ("unknown expectation", POST + b"Expect: 101-switch\r\nContent-Length: 1\r\n\r\nx", 417),
    ("EOF in the head", b"GET / HTTP/1.1\r\nHost: exa", 400),
    ("EOF in a body", POST + b"Content-Length: 100\r\n\r\nabc", 400),
    ("EOF in a chunk", CHUNKED + b"10\r\nabc", 400),
    (
        "second pipelined request bad",
        b"GET / HTTP/1.1\r\n" + H + b"\r\nGET / HTTP/1.1\r\nHost : x\r\n\r\n",
        400,
    ),
    (
        "http-garden: CL body smuggling a request",
        POST + b"Content-Length: 0\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        400,
    ),
]


def replay(raw: bytes, step: int) -> tuple[list[Request], ProtocolError | None, bool]:
    conn = Connection()
    pieces = [raw[i : i + step] for i in range(0, len(raw), step)] if step else [raw]
    requests: list[Request] = []
    try:
        for piece in [*pieces, b""]:
            conn.receive_data(piece)
            while True:
                event = conn.next_event()
                if event is NEED_DATA or event is CLOSED:
                    break
                if not isinstance(event, ExpectContinue):
                    requests.append(event)
    except ProtocolError as err:
        return requests, err, conn.keep_alive
    return requests, None, conn.keep_alive


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 100
    assert len({raw for _, raw, _ in CASES}) == len(CASES), "duplicate cases"


@pytest.mark.parametrize(("raw", "status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("step", [0, 1])
def test_hostile_request_rejected(raw: bytes, status: int, step: int) -> None:
    _, err, keep_alive = replay(raw, step)
    assert err is not None, "accepted a hostile request"
    assert err.status == status, err
    assert err.close and not keep_alive
    fresh, fresh_err, _ = replay(b"GET / HTTP/1.1\r\n" + H + b"\r\n", 0)
    assert fresh_err is None and fresh[0].path == "/"


def test_requests_after_connection_close_are_ignored() -> None:
    raw = b"GET /1 HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\nGET /2 HTTP/1.1\r\n" + H + b"\r\n"
    requests, err, keep_alive = replay(raw, 0)
    assert [r.path for r in requests] == ["/1"] and err is None and not keep_alive


def test_http10_ignores_pipelined_garbage_after_closing_request() -> None:
    requests, err, _ = replay(b"GET / HTTP/1.0\r\n\r\n\0\0\0 garbage", 0)
    assert len(requests) == 1 and err is None
