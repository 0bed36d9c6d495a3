"""Hostile HTTP/1.1 requests, each with the answer a careful server gives, plus process probes.

Data first: `CASES` is a table of raw bytes and expectations, replayed over a real socket against
every mode by tests/test_hardening_corpus.py (and mixed into scripts/soak.py). A case says

- `statuses`: the responses that must arrive, in order, each as the set of acceptable statuses
  (a set because RFC 9112 sometimes lets a server choose, e.g. reject *or* tolerate a bare LF);
- `close`: True when framing is in doubt and the server must answer and close (the response says
  `Connection: close` and EOF follows with nothing after it); False when the connection must stay
  usable (a follow-up request on it is served); None when the RFC allows either, in which case the
  response's own `Connection` header decides which of those two checks applies;
- `prompt`: the raw bytes end in the middle of a head, right after a line that is already wrong
  (RFC 9112: refuse it as soon as the line is complete): the answer must come at once, far below
  the header timeout, never as a 408 when the timeout fires;
- `headers`: fields the last response must carry with exactly these values (e.g. `Allow`).

Provenance is in `source`: "rfc9112 §x" for a MUST in the spec, or the public corpus the case was
drawn from (gunicorn tests/requests/invalid, nodejs/llhttp test/request/*.md, http-garden,
aiohttp's request-smuggling CVE tests).  Every request targets /healthz or /calculate so that a
case answered "200" really was parsed as the request we meant.

The second half holds the small probes the hardening tests and the soak use to watch a server
process from outside: RSS, open descriptors, threads and CPU time, all read from /proc.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from dataclasses import dataclass

from tests.support import RawResponse, read_response

# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------

HOST = "Host: calc.test\r\n"
OK = frozenset({200})
BAD = frozenset({400})
_LIMIT_BODY = 1024 * 1024  # app/protocol.py MAX_BODY_SIZE (contract)
_LIMIT_LINE = 8 * 1024  # MAX_REQUEST_LINE
_LIMIT_HEAD = 16 * 1024  # MAX_HEAD_SIZE
_LIMIT_HEADERS = 100  # MAX_HEADER_COUNT


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    statuses: tuple[frozenset[int], ...]
    close: bool | None
    source: str
    head_only: tuple[int, ...] = ()  # indexes of responses to HEAD requests (no body on the wire)
    prompt: bool = False  # an unfinished head that is already invalid: answered at once
    headers: tuple[tuple[str, str], ...] = ()  # (lower-case name, value) on the last response

    def __repr__(self) -> str:  # keeps pytest ids and failure output short
        return f"Case({self.name})"


def b(text: str) -> bytes:
    return text.encode("latin-1")


def get(target: str = "/healthz", extra: str = "", version: str = "1.1") -> bytes:
    return b(f"GET {target} HTTP/{version}\r\n{HOST}{extra}\r\n")


def post_cl(body: bytes, extra: str = "", cl: str | None = None) -> bytes:
    """POST /calculate text/plain with a Content-Length (its real length unless `cl` given)."""
    length = str(len(body)) if cl is None else cl
    head = (
        f"POST /calculate HTTP/1.1\r\n{HOST}Content-Type: text/plain\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    )
    return b(head) + body


def post_chunked(chunks: bytes, extra: str = "", te: str = "chunked") -> bytes:
    head = (
        f"POST /calculate HTTP/1.1\r\n{HOST}Content-Type: text/plain\r\n"
        f"Transfer-Encoding: {te}\r\n{extra}\r\n"
    )
    return b(head) + chunks


GOOD_CHUNKS = b"3\r\n1+1\r\n0\r\n\r\n"


def one(name: str, raw: bytes, statuses: frozenset[int] | set[int] | int, close: bool | None,
        source: str, *, headers: tuple[tuple[str, str], ...] = ()) -> Case:
    wanted = frozenset({statuses}) if isinstance(statuses, int) else frozenset(statuses)
    return Case(name, raw, (wanted,), close, source, headers=headers)


def early(name: str, raw: bytes, status: int, source: str, *, body: bool = False) -> Case:
    """`raw` stops right after an offending line (or bare CR): `status` and close, at once."""
    assert body or b"\r\n\r\n" not in raw, "an early case must not finish its head"
    return Case(name, raw, (frozenset({status}),), True, source, prompt=True)


def seq(name: str, raw: bytes, statuses: list[set[int] | int], close: bool | None,
        source: str, head_only: tuple[int, ...] = ()) -> Case:
    sets = tuple(frozenset({s}) if isinstance(s, int) else frozenset(s) for s in statuses)
    return Case(name, raw, sets, close, source, head_only)


RFC = "rfc9112"
GUNICORN = "gunicorn tests/requests/invalid"
LLHTTP = "llhttp test/request"
GARDEN = "http-garden"
AIOHTTP = "aiohttp CVE-2023-47627/CVE-2024-23829 tests"

# --------------------------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------------------------

REQUEST_LINE = [
    one("rl-empty-method", b" /healthz HTTP/1.1\r\n" + b(HOST) + b"\r\n", 400, True, GUNICORN),
    one("rl-double-space", b"GET  /healthz HTTP/1.1\r\n" + b(HOST) + b"\r\n", 400, True, RFC),
    one("rl-trailing-space", b"GET /healthz HTTP/1.1 \r\n" + b(HOST) + b"\r\n", 400, True, RFC),
    one("rl-tab-separators", b"GET\t/healthz\tHTTP/1.1\r\n" + b(HOST) + b"\r\n", 400, True,
        LLHTTP),
    one("rl-missing-version", b"GET /healthz\r\n" + b(HOST) + b"\r\n", 400, True, RFC),
    one("rl-http09-simple", b"GET /healthz\r\n\r\n", 400, True, GARDEN),
    one("rl-version-lowercase", b"GET /healthz http/1.1\r\n" + b(HOST) + b"\r\n", 400, True,
        GUNICORN),
    one("rl-version-2", get(version="2.0"), 505, True, RFC),
    one("rl-version-3", get(version="3.0"), 505, True, RFC),
    one("rl-version-1.2", get(version="1.2"), {200, 505}, None, "rfc9110 §6.2"),
    one("rl-version-0.9", get(version="0.9"), {400, 505}, True, GARDEN),
    one("rl-version-1.1.1", get(version="1.1.1"), {400, 505}, True, GUNICORN),
    one("rl-version-1.10", get(version="1.10"), {400, 505}, True, LLHTTP),
    one("rl-version-01.1", get(version="01.1"), {400, 505}, True, LLHTTP),
    one("rl-version-letters", get(version="A.B"), 400, True, GUNICORN),
    one("rl-version-missing-minor", get(version="1"), {400, 505}, True, GUNICORN),
    one("rl-no-target", b"GET HTTP/1.1\r\n" + b(HOST) + b"\r\n", 400, True, GUNICORN),
    one("rl-method-paren", b"GE(T /healthz HTTP/1.1\r\n" + b(HOST) + b"\r\n", 400, True,
        GUNICORN),
    one("rl-method-non-ascii", b"G\xc3\x89T /healthz HTTP/1.1\r\n" + b(HOST) + b"\r\n", 400,
        True, GUNICORN),
    one("rl-method-nul", b"GE\x00T /healthz HTTP/1.1\r\n" + b(HOST) + b"\r\n", 400, True,
        GARDEN),
    one("rl-target-space", b"GET /heal thz HTTP/1.1\r\n" + b(HOST) + b"\r\n", 400, True, RFC),
    one("rl-target-nul", b"GET /healthz\x00 HTTP/1.1\r\n" + b(HOST) + b"\r\n", 400, True,
        GARDEN),
    one("rl-target-non-ascii", b"GET /\xffhealthz HTTP/1.1\r\n" + b(HOST) + b"\r\n", 400,
        True, GUNICORN),
    one("rl-target-del", b"GET /healthz\x7f HTTP/1.1\r\n" + b(HOST) + b"\r\n", 400, True,
        LLHTTP),
    one("rl-target-ctl", b"GET /health\x01z HTTP/1.1\r\n" + b(HOST) + b"\r\n", 400, True,
        LLHTTP),
    one("rl-target-fragment", get("/healthz#frag"), 400, True, "rfc9112 §3.2, rfc3986 §3.5"),
    one("rl-bare-cr", b"GET /healthz HTTP/1.1\r" + b(HOST) + b"\r\n", 400, True, RFC),
    one("rl-bare-lf-endings", b"GET /healthz HTTP/1.1\nHost: calc.test\n\n", {200, 400}, None,
        "rfc9112 §2.2 (MAY accept LF)"),
    one("rl-leading-crlf", b"\r\n" + get(), {200, 400}, None, "rfc9112 §2.2 (SHOULD ignore)"),
    one("rl-tls-client-hello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40
        + b"\r\n\r\n", 400, True, GARDEN),
    # A real handshake has no CRLF: refused on its first byte, not at the header timeout.
    one("rl-tls-client-hello-no-line-end",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40, 400, True, GARDEN),
    one("rl-h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400, 505}, True, RFC),
    one("rl-asterisk-get", get("*"), 400, True, "rfc9112 §3.2.4 (OPTIONS only)"),
    one("rl-authority-form-get", get("calc.test:80"), 400, True, "rfc9112 §3.2.3 (CONNECT only)"),
    # An origin server does not tunnel: 501 (rfc9110 §15.6.2), and close, since what follows the
    # head may already be tunnelled bytes.
    one("rl-connect", b"CONNECT calc.test:443 HTTP/1.1\r\n" + b(HOST) + b"\r\n", 501, True,
        "rfc9112 §3.2.3, rfc9110 §9.3.6"),
    one("rl-connect-ipv6", b"CONNECT [::1]:443 HTTP/1.1\r\n" + b(HOST) + b"\r\n", 501, True,
        "rfc9112 §3.2.3"),
    one("rl-connect-origin-form", b"CONNECT /healthz HTTP/1.1\r\n" + b(HOST) + b"\r\n", 400,
        True, "rfc9112 §3.2.3 (authority-form only)"),
    one("rl-absolute-form", get("http://calc.test/healthz"), 200, False, "rfc9112 §3.2.2"),
    one("rl-absolute-form-other-host", get("http://elsewhere.test/healthz"), 200, False,
        "rfc9112 §3.2.2"),
    one("rl-lowercase-method", b"get /healthz HTTP/1.1\r\n" + b(HOST) + b"\r\n", 501, False,
        "rfc9110 §9.1 (case-sensitive; unrecognised SHOULD 501)"),
    one("rl-unknown-method", b"FROB /healthz HTTP/1.1\r\n" + b(HOST) + b"\r\n", 501, False,
        "rfc9110 §9.1 SHOULD"),
    one("rl-huge-method", b"G" * (_LIMIT_LINE + 100) + b" /healthz HTTP/1.1\r\n" + b(HOST)
        + b"\r\n", {400, 414, 501}, True, GUNICORN),
    one("rl-uri-too-long", get("/healthz?" + "a" * (_LIMIT_LINE + 100)), 414, True, GUNICORN),
    one("rl-endless-line", b"GET /" + b"a" * (_LIMIT_LINE * 3), 414, True,
        "limit enforced before CRLF"),
    one("rl-nul-first", b"\x00" + get(), 400, True, GARDEN),
    one("rl-only-garbage", b"\xff\xfe\xfd\r\n\r\n", 400, True, GARDEN),
]

HEADER_SYNTAX = [
    one("hs-space-before-colon", get(extra="X-A : 1\r\n"), 400, True, "rfc9112 §5.1 MUST"),
    one("hs-tab-before-colon", get(extra="X-A\t: 1\r\n"), 400, True, "rfc9112 §5.1 MUST"),
    one("hs-no-colon", get(extra="X-A 1\r\n"), 400, True, GUNICORN),
    one("hs-empty-name", get(extra=": 1\r\n"), 400, True, GUNICORN),
    one("hs-obs-fold", get(extra="X-A: 1\r\n 2\r\n"), 400, True, "rfc9112 §5.2 (reject)"),
    one("hs-obs-fold-tab", get(extra="X-A: 1\r\n\t2\r\n"), 400, True, "rfc9112 §5.2 (reject)"),
    one("hs-first-line-indented", b"GET /healthz HTTP/1.1\r\n " + b(HOST) + b"\r\n", 400, True,
        "rfc9112 §2.2"),
    one("hs-name-space", get(extra="X A: 1\r\n"), 400, True, GUNICORN),
    one("hs-name-paren", get(extra="X(A): 1\r\n"), 400, True, GUNICORN),
    one("hs-name-non-ascii", get(extra="X\xffA: 1\r\n"), 400, True, GUNICORN),
    one("hs-name-utf8", b("GET /healthz HTTP/1.1\r\n" + HOST) + "Hóst: 1\r\n\r\n".encode(), 400,
        True, LLHTTP),
    one("hs-value-nul", get(extra="X-A: a\x00b\r\n"), 400, True, "rfc9110 §5.5 MUST"),
    one("hs-value-bare-cr", get(extra="X-A: a\rb\r\n"), 400, True, "rfc9110 §5.5 MUST"),
    one("hs-value-ctl", get(extra="X-A: a\x01b\r\n"), 400, True, LLHTTP),
    one("hs-value-del", get(extra="X-A: a\x7fb\r\n"), 400, True, LLHTTP),
    one("hs-value-vt", get(extra="X-A: a\x0bb\r\n"), 400, True, GARDEN),
    one("hs-value-obs-text", get(extra="X-A: caf\xe9\r\n"), 200, False, "rfc9110 §5.5 obs-text"),
    one("hs-value-inner-tab", get(extra="X-A: a\tb\r\n"), 200, False, RFC),
    one("hs-value-empty", get(extra="X-A:\r\n"), 200, False, RFC),
    one("hs-colon-in-value", get(extra="X-A: b: c\r\n"), 200, False, RFC),
    one("hs-bare-lf-between", get(extra="X-A: 1\nX-B: 2\r\n"), {200, 400}, None,
        "rfc9112 §2.2"),
    one("hs-cr-cr-lf", get(extra="X-A: 1\r\r\n"), 400, True, GARDEN),
    one("hs-100-headers", b("GET /healthz HTTP/1.1\r\n" + HOST
        + "".join(f"X-{i}: v\r\n" for i in range(_LIMIT_HEADERS - 1)) + "\r\n"), 200, False,
        "limit: exactly MAX_HEADER_COUNT"),
    one("hs-101-headers", b("GET /healthz HTTP/1.1\r\n" + HOST
        + "".join(f"X-{i}: v\r\n" for i in range(_LIMIT_HEADERS + 1)) + "\r\n"), 431, True,
        "limit: MAX_HEADER_COUNT"),
    one("hs-huge-value", get(extra="X-A: " + "v" * (_LIMIT_HEAD + 10) + "\r\n"), 431, True,
        "limit: MAX_HEAD_SIZE"),
    one("hs-huge-name", get(extra="X" * (_LIMIT_HEAD + 10) + ": 1\r\n"), 431, True,
        "limit: MAX_HEAD_SIZE"),
    one("hs-head-sum-too-big", get(extra="".join(f"X-{i}: {'v' * 1000}\r\n" for i in range(20))),
        431, True, "limit: MAX_HEAD_SIZE"),
    one("hs-endless-header", b"GET /healthz HTTP/1.1\r\nX-A: " + b"v" * (_LIMIT_HEAD * 3), 431,
        True, "limit enforced before CRLFCRLF"),
    one("hs-endless-header-lines", b"GET /healthz HTTP/1.1\r\n" + b"X: 1\r\n" * 4000, 431, True,
        "limit enforced before CRLFCRLF"),
]

HOST_RULES = [
    one("host-missing-1.1", b"GET /healthz HTTP/1.1\r\n\r\n", 400, True, "rfc9112 §3.2 MUST"),
    one("host-missing-1.0", b"GET /healthz HTTP/1.0\r\n\r\n", 200, True, "rfc9112 §3.2"),
    one("host-duplicate", get(extra="Host: other.test\r\n"), 400, True, "rfc9110 §7.2 MUST"),
    one("host-duplicate-same", get(extra=HOST), 400, True, "rfc9110 §7.2 MUST"),
    one("host-empty", b"GET /healthz HTTP/1.1\r\nHost:\r\n\r\n", {200, 400}, None,
        "rfc9112 §3.2"),
    one("host-space", b"GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n", 400, True,
        "rfc9110 §7.2 invalid value"),
    one("host-slash", b"GET /healthz HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, True, GARDEN),
    one("host-userinfo", b"GET /healthz HTTP/1.1\r\nHost: user@a\r\n\r\n", 400, True, GARDEN),
    one("host-comma-list", b"GET /healthz HTTP/1.1\r\nHost: a, b\r\n\r\n", 400, True, GARDEN),
    one("host-bad-port", b"GET /healthz HTTP/1.1\r\nHost: a:port\r\n\r\n", 400, True, GARDEN),
    one("host-non-ascii", b"GET /healthz HTTP/1.1\r\nHost: \xe9.test\r\n\r\n", 400, True,
        GARDEN),
    one("host-with-port", b"GET /healthz HTTP/1.1\r\nHost: calc.test:8080\r\n\r\n", 200, False,
        RFC),
    one("host-ipv6", b"GET /healthz HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 200, False, RFC),
    one("host-absolute-form-no-host", b"GET http://calc.test/healthz HTTP/1.1\r\n\r\n", 400,
        True, "rfc9112 §3.2 MUST"),
]

CONTENT_LENGTH = [
    one("cl-negative", post_cl(b"1+1", cl="-3"), 400, True, "rfc9110 §8.6"),
    one("cl-plus", post_cl(b"1+1", cl="+3"), 400, True, AIOHTTP),
    one("cl-hex", post_cl(b"1+1", cl="0x3"), 400, True, GUNICORN),
    one("cl-inner-space", post_cl(b"1+1", cl="0 3"), 400, True, LLHTTP),
    one("cl-empty", post_cl(b"1+1", cl=""), 400, True, LLHTTP),
    one("cl-comma-only", post_cl(b"1+1", cl=","), 400, True, GARDEN),
    one("cl-unicode-digit", b("POST /calculate HTTP/1.1\r\n" + HOST
        + "Content-Type: text/plain\r\n") + "Content-Length: ３\r\n\r\n1+1".encode(), 400, True,
        AIOHTTP),
    one("cl-underscore-digits", post_cl(b"1+1", cl="0_3"), 400, True, AIOHTTP),
    one("cl-duplicate-different", post_cl(b"1+1", extra="Content-Length: 4\r\n"), 400, True,
        "rfc9112 §6.3 MUST"),
    one("cl-duplicate-same", post_cl(b"1+1", extra="Content-Length: 3\r\n"), {200, 400}, None,
        "rfc9110 §8.6"),
    one("cl-list-same", post_cl(b"1+1", cl="3, 3"), {200, 400}, None, "rfc9110 §8.6"),
    one("cl-list-different", post_cl(b"1+1", cl="3, 4"), 400, True, "rfc9112 §6.3 MUST"),
    one("cl-20-digits", post_cl(b"1+1", cl="9" * 20), {400, 413}, True, GUNICORN),
    one("cl-over-limit", post_cl(b"", cl=str(_LIMIT_BODY + 1)), 413, True, "limit: MAX_BODY_SIZE"),
    one("cl-leading-zeros", post_cl(b"1+1", cl="0003"), 200, False, "rfc9110 §8.6 1*DIGIT"),
    one("cl-ows", post_cl(b"1+1", cl=" 3 "), 200, False, RFC),
    one("cl-on-get", get(extra="Content-Length: 5\r\n") + b"hello", 200, False,
        "body consumed, then keep-alive"),
    one("cl-zero-post", post_cl(b""), {400, 422}, False, "empty expression"),
    seq("cl-shorter-than-body", post_cl(b"1+1+1", cl="3") + b"\r\n\r\n", [200, 400], True,
        "leftover '+1' parsed as a request line"),
    seq("cl-exact-then-pipelined", post_cl(b"1+1") + get(), [200, 200], False, RFC),
    one("cl-underscore-name", get(extra="Content_Length: 5\r\n"), 200, False,
        "not a framing header"),
]

TRANSFER_ENCODING = [
    one("te-and-cl", post_chunked(GOOD_CHUNKS, extra="Content-Length: 5\r\n"), {200, 400}, True,
        "rfc9112 §6.1 (process as chunked then close, or reject)"),
    one("te-cl-first", b("POST /calculate HTTP/1.1\r\n" + HOST + "Content-Type: text/plain\r\n"
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n") + GOOD_CHUNKS, {200, 400}, True,
        "rfc9112 §6.1"),
    one("te-identity", post_chunked(b"1+1", te="identity", extra="Content-Length: 3\r\n"),
        400, True, "rfc9112 §6.1 (TE with CL)"),
    one("te-identity-alone", post_chunked(b"1+1", te="identity"), 400, True,
        "rfc9112 §6.3 MUST (chunked not final)"),
    one("te-gzip-alone", post_chunked(GOOD_CHUNKS, te="gzip"), 400, True,
        "rfc9112 §6.3 MUST (chunked not final)"),
    one("te-gzip-chunked", post_chunked(GOOD_CHUNKS, te="gzip, chunked"), 501, True,
        "rfc9112 §6.1 SHOULD (unknown coding, chunked final)"),
    one("te-deflate-chunked", post_chunked(GOOD_CHUNKS, te="deflate, chunked"), 501, True,
        "rfc9112 §6.1 SHOULD"),
    one("te-chunked-not-last", post_chunked(GOOD_CHUNKS, te="chunked, gzip"), 400, True,
        "rfc9112 §6.3 MUST"),
    one("te-chunked-twice", post_chunked(GOOD_CHUNKS, te="chunked, chunked"), 400, True,
        "rfc9112 §7.1 MUST NOT"),
    one("te-two-headers", post_chunked(GOOD_CHUNKS, extra="Transfer-Encoding: chunked\r\n"),
        400, True, "rfc9112 §7.1 (chunked twice)"),
    one("te-uppercase", post_chunked(GOOD_CHUNKS, te="CHUNKED"), 200, False,
        "codings are case-insensitive"),
    one("te-xchunked", post_chunked(GOOD_CHUNKS, te="xchunked"), 400, True,
        "rfc9112 §6.3 (chunked not final)"),
    one("te-chunked-param", post_chunked(GOOD_CHUNKS, te="chunked;q=1"), 400, True,
        "rfc9112 §6.3 (chunked takes no parameter)"),
    one("te-vtab", post_chunked(GOOD_CHUNKS, te="chunked\x0b"), 400, True, GARDEN),
    one("te-nbsp", post_chunked(GOOD_CHUNKS, te="chunked\xa0"), 400, True, GARDEN),
    one("te-space-before-colon", b("POST /calculate HTTP/1.1\r\n" + HOST
        + "Content-Type: text/plain\r\nTransfer-Encoding : chunked\r\n\r\n") + GOOD_CHUNKS, 400,
        True, "rfc9112 §5.1 MUST"),
    seq("te-underscore-name", get(extra="Transfer_Encoding: chunked\r\n") + b"0\r\n\r\n",
        [200, 400], True, "ignored header: '0' is then a bad request line"),
    one("te-http10", b("POST /calculate HTTP/1.0\r\n" + HOST + "Content-Type: text/plain\r\n"
        "Transfer-Encoding: chunked\r\n\r\n") + GOOD_CHUNKS, {200, 400}, True, "rfc9112 §6.1 MUST"),
    one("te-empty", post_chunked(GOOD_CHUNKS, te=""), 400, True, "rfc9112 §6.3 (no chunked)"),
    one("te-on-get", get(extra="Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n", 200, False,
        "empty chunked body, keep-alive"),
]

CHUNKED = [
    one("ch-valid", post_chunked(GOOD_CHUNKS), 200, False, RFC),
    one("ch-upper-hex", post_chunked(b"A\r\n1+2+3+4+56\r\n0\r\n\r\n"), 200, False, LLHTTP),
    one("ch-lower-hex", post_chunked(b"a\r\n1+2+3+4+56\r\n0\r\n\r\n"), 200, False, LLHTTP),
    one("ch-extension", post_chunked(b"3;foo=bar\r\n1+1\r\n0\r\n\r\n"), 200, False, LLHTTP),
    one("ch-extension-bare-name", post_chunked(b"3;foo\r\n1+1\r\n0;bar\r\n\r\n"), 200, False,
        LLHTTP),
    one("ch-quoted-extension", post_chunked(b'3;foo="b a;r"\r\n1+1\r\n0\r\n\r\n'), {200, 400},
        None, LLHTTP),
    one("ch-leading-zeros", post_chunked(b"0003\r\n1+1\r\n000\r\n\r\n"), 200, False, LLHTTP),
    one("ch-one-byte-chunks", post_chunked(b"1\r\n1\r\n1\r\n+\r\n1\r\n1\r\n0\r\n\r\n"), 200,
        False, RFC),
    one("ch-size-lf", post_chunked(b"3\n1+1\r\n0\r\n\r\n"), 400, True, "waitress"),
    one("ch-size-lf-crlf", post_chunked(b"3\n\r\n1+1\r\n0\r\n\r\n"), 400, True,
        "waitress 5\\n\\r\\n"),
    one("ch-lf-in-extension", post_chunked(b"3;a\nb\r\n1+1\r\n0\r\n\r\n"), 400, True,
        "gunicorn chunked_12"),
    one("ch-cr-in-extension", post_chunked(b"3;a\rb\r\n1+1\r\n0\r\n\r\n"), 400, True, GUNICORN),
    one("ch-nul-in-extension", post_chunked(b"3;a\x00\r\n1+1\r\n0\r\n\r\n"), 400, True, GARDEN),
    one("ch-ext-no-semicolon", post_chunked(b"3 foo\r\n1+1\r\n0\r\n\r\n"), 400, True, LLHTTP),
    one("ch-ext-empty-name", post_chunked(b"3;\r\n1+1\r\n0\r\n\r\n"), 400, True, LLHTTP),
    one("ch-space-before-size", post_chunked(b" 3\r\n1+1\r\n0\r\n\r\n"), 400, True, GUNICORN),
    one("ch-space-after-size", post_chunked(b"3 \r\n1+1\r\n0\r\n\r\n"), 400, True,
        "gunicorn chunked_whitespace"),
    one("ch-0x-size", post_chunked(b"0x3\r\n1+1\r\n0\r\n\r\n"), 400, True, AIOHTTP),
    one("ch-negative-size", post_chunked(b"-3\r\n1+1\r\n0\r\n\r\n"), 400, True, GUNICORN),
    one("ch-plus-size", post_chunked(b"+3\r\n1+1\r\n0\r\n\r\n"), 400, True, AIOHTTP),
    one("ch-underscore-size", post_chunked(b"0_3\r\n1+1\r\n0\r\n\r\n"), 400, True, AIOHTTP),
    one("ch-empty-size", post_chunked(b"\r\n1+1\r\n0\r\n\r\n"), 400, True, GUNICORN),
    one("ch-non-hex-size", post_chunked(b"g\r\n1+1\r\n0\r\n\r\n"), 400, True, GUNICORN),
    one("ch-unicode-size", post_chunked("３\r\n1+1\r\n0\r\n\r\n".encode()), 400, True, AIOHTTP),
    one("ch-size-overflow", post_chunked(b"f" * 40 + b"\r\n1+1\r\n0\r\n\r\n"), {400, 413}, True,
        GUNICORN),
    one("ch-size-over-limit", post_chunked(b"100001\r\n"), 413, True, "limit: MAX_BODY_SIZE"),
    one("ch-data-too-long", post_chunked(b"3\r\n1+1+1\r\n0\r\n\r\n"), 400, True, GUNICORN),
    one("ch-no-crlf-after-data", post_chunked(b"3\r\n1+1XX0\r\n\r\n"), 400, True, GUNICORN),
    one("ch-lf-after-data", post_chunked(b"3\r\n1+1\n0\r\n\r\n"), 400, True, GARDEN),
    one("ch-cr-after-data", post_chunked(b"3\r\n1+1\r0\r\n\r\n"), 400, True, GARDEN),
    one("ch-last-chunk-lf", post_chunked(b"3\r\n1+1\r\n0\n\r\n"), 400, True, GARDEN),
    one("ch-final-crlf-missing", post_chunked(b"3\r\n1+1\r\n0\r\n") + get(), 400, True,
        "next request line read as a trailer"),
    one("ch-trailer", post_chunked(b"3\r\n1+1\r\n0\r\nX-T: v\r\n\r\n"), 200, False, RFC),
    one("ch-trailers-two", post_chunked(b"3\r\n1+1\r\n0\r\nX-T: v\r\nX-U: w\r\n\r\n"), 200, False,
        LLHTTP),
    one("ch-trailer-bad-syntax", post_chunked(b"3\r\n1+1\r\n0\r\nbad trailer\r\n\r\n"), 400,
        True, LLHTTP),
    one("ch-trailer-space-colon", post_chunked(b"3\r\n1+1\r\n0\r\nX-T : v\r\n\r\n"), 400, True,
        RFC),
    one("ch-trailer-nul", post_chunked(b"3\r\n1+1\r\n0\r\nX-T: a\x00\r\n\r\n"), 400, True,
        GARDEN),
    one("ch-trailer-content-length", post_chunked(b"3\r\n1+1\r\n0\r\nContent-Length: 9\r\n\r\n"),
        {200, 400}, None, "rfc9110 §6.5.1 (never used for framing)"),
    one("ch-trailers-too-big", post_chunked(b"3\r\n1+1\r\n0\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(40)) + b"\r\n"),
        {400, 413, 431}, True, "limit: trailers bounded like headers"),
    one("ch-endless-extension", post_chunked(b"3;" + b"a" * (_LIMIT_HEAD * 3)), {400, 413, 431},
        True, "chunk line bounded"),
    one("ch-endless-size-zeros", post_chunked(b"0" * (_LIMIT_HEAD * 3)), {400, 413, 431}, True,
        "chunk line bounded"),
    one("ch-zero-ext", post_chunked(b"3\r\n1+1\r\n0;x=y\r\n\r\n"), 200, False, LLHTTP),
    one("ch-bws-before-semicolon", post_chunked(b"3\t;x\r\n1+1\r\n0\r\n\r\n"), {200, 400}, None,
        "rfc9112 §7.1.1 BWS"),
]

EXPECT_AND_METHODS = [
    one("expect-100-with-body", post_cl(b"1+1", extra="Expect: 100-continue\r\n"), 200, False,
        "rfc9110 §10.1.1"),
    one("expect-unknown", get(extra="Expect: teapot\r\n"), {200, 417}, None, "rfc9110 §10.1.1"),
    one("method-trace", b"TRACE /healthz HTTP/1.1\r\n" + b(HOST) + b"\r\n", 405, False,
        "rfc9110 §15.5.6 (known, not for this resource)",
        headers=(("allow", "GET, HEAD, OPTIONS"),)),
    one("method-delete-calculate", b"DELETE /calculate HTTP/1.1\r\n" + b(HOST) + b"\r\n", 405,
        False, "rfc9110 §15.5.6 MUST Allow",
        headers=(("allow", "GET, HEAD, POST, OPTIONS"),)),
    one("method-post-unknown-path", b"POST /nowhere HTTP/1.1\r\n" + b(HOST)
        + b"Content-Length: 0\r\n\r\n", 404, False, "DESIGN: 404"),
    one("method-brew", b"BREW / HTTP/1.1\r\n" + b(HOST) + b"\r\n", 501, False,
        "rfc9110 §9.1 SHOULD (unrecognised)"),
    one("method-dash-token", b"-BLARGH /foo HTTP/1.1\r\n" + b(HOST) + b"\r\n", 501, False,
        "rfc9110 §9.1 ('-' is a tchar)"),
    one("method-unknown-with-body", b"BREW /calculate HTTP/1.1\r\n" + b(HOST)
        + b"Content-Length: 3\r\n\r\n1+1", 501, False, "rfc9110 §9.1, body consumed"),
    one("method-options-asterisk", b"OPTIONS * HTTP/1.1\r\n" + b(HOST) + b"\r\n", 200, False,
        "rfc9110 §9.3.7", headers=(("allow", "GET, HEAD, POST, OPTIONS"),
                                   ("content-length", "0"))),
    one("method-options-calculate", b"OPTIONS /calculate HTTP/1.1\r\n" + b(HOST) + b"\r\n",
        200, False, "rfc9110 §9.3.7", headers=(("allow", "GET, HEAD, POST, OPTIONS"),)),
    one("method-options-page", b"OPTIONS / HTTP/1.1\r\n" + b(HOST) + b"\r\n", 200, False,
        "rfc9110 §9.3.7", headers=(("allow", "GET, HEAD, OPTIONS"),)),
    one("method-options-static", b"OPTIONS /static/app.css HTTP/1.1\r\n" + b(HOST) + b"\r\n",
        200, False, "rfc9110 §9.3.7", headers=(("allow", "GET, HEAD, OPTIONS"),)),
    one("method-options-unknown-path", b"OPTIONS /nowhere HTTP/1.1\r\n" + b(HOST) + b"\r\n",
        404, False, "DESIGN: 404"),
    one("path-traversal", get("/static/../../etc/passwd"), 404, False, "DESIGN: never outside"),
    one("path-traversal-encoded", get("/static/%2e%2e%2fpyproject.toml"), 404, False,
        "rfc3986 §6.2.2.2: %2f stays"),
    one("bad-percent-encoding", get("/calculate?expr=%zz"), 400, True,
        "rfc9112 §3.2, rfc3986 §2.1 (invalid target)"),
    one("bad-percent-encoding-in-body", b("POST /calculate HTTP/1.1\r\n" + HOST
        + "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 8\r\n\r\n")
        + b"expr=%zz", 400, False, "DESIGN: 400 (form body)"),
]

# RFC 9112 §3.2: "Recipients of an invalid request-line SHOULD respond with either a 400 (Bad
# Request) error or a 301"; RFC 3986 §2-3 allows unreserved, sub-delims, ":", "@", "/", "?" and
# "%" HEXDIG HEXDIG in a path or query, and nothing else.
REQUEST_TARGET = [
    *(one(f"rt-{label}", get(f"/healthz?a={char}"), 400, True, "rfc9112 §3.2, rfc3986 §2")
      for label, char in [("dquote", '"'), ("lt", "<"), ("gt", ">"), ("backslash", "\\"),
                          ("caret", "^"), ("backtick", "`"), ("lbrace", "{"), ("pipe", "|"),
                          ("rbrace", "}"), ("lbracket", "["), ("rbracket", "]")]),
    one("rt-dquote-in-path", get('/heal"thz'), 400, True, "rfc3986 §3.3"),
    one("rt-pct-truncated", get("/healthz?a=%4"), 400, True, "rfc3986 §2.1"),
    one("rt-pct-bare", get("/healthz%"), 400, True, "rfc3986 §2.1"),
    one("rt-pct-not-hex", get("/healthz?a=%G1"), 400, True, "rfc3986 §2.1"),
    one("rt-obs-text", get("/healthz?a=\xe9"), 400, True, "rfc3986 §2 (raw byte >= 0x80)"),
    one("rt-nbsp", get("/healthz?a=\xa0"), 400, True, "rfc3986 §2 (space-like)"),
    one("rt-htab", get("/health\tz"), 400, True, "rfc9112 §3 (space-like)"),
    one("rt-vt", get("/health\x0bz"), 400, True, "rfc9112 §3 (space-like)"),
    one("rt-ff", get("/health\x0cz"), 400, True, "rfc9112 §3 (space-like)"),
    one("rt-absolute-bad-pct", get("http://calc.test/healthz?%zz"), 400, True, "rfc3986 §2.1"),
    one("rt-absolute-userinfo", get("http://user@calc.test/healthz"), 400, True,
        "rfc9110 §4.2.4"),
    one("rt-every-allowed-char", get("/healthz?a-._~!$&'()*+,;=:@/?%41"), 200, False,
        "rfc3986 §3.4: all of these may appear"),
    one("rt-absolute-ipv6", get("http://[::1]:8080/healthz"), 200, False, "rfc3986 §3.2.2"),
]

# RFC 3986 §6.2.2.2: %-encoded unreserved characters are equivalent to the characters; nothing
# else is decoded, so "%2F", "%2e%2e" (as a name) and "%00" never become path structure.
PATHS = [
    one("path-escaped-unreserved", get("/%63alculate?expr=1%2B2"), 200, False,
        "rfc3986 §6.2.2.2"),
    one("path-escaped-every-letter", get("/%68%65%61%6C%74%68%7a"), 200, False,
        "rfc3986 §6.2.2.2 (hex of either case)"),
    one("path-static-escaped-folder", get("/st%61tic/app.css"), 200, False, "rfc3986 §6.2.2.2"),
    one("path-static-escaped-dot", get("/static/app%2ecss"), 200, False,
        "rfc3986 §6.2.2.2 ('.' is unreserved)"),
    one("path-static-dotdot-escaped", get("/static/%2e%2e/pyproject.toml"), 404, False,
        "never outside app/static"),
    one("path-static-dotdot-slash-escaped", get("/static/..%2Fpyproject.toml"), 404, False,
        "rfc3986 §6.2.2.2 (%2F is reserved: stays)"),
    one("path-static-escaped-slash", get("/static%2Fapp.css"), 404, False, "%2F is not '/'"),
    one("path-static-nul", get("/static/app.css%00"), 404, False, "%00 stays"),
    one("path-escaped-percent", get("/%2568ealthz"), 404, False, "no double decoding"),
    one("path-dotdot-to-healthz", get("/static/../healthz"), 404, False,
        "no dot-segment removal: '..' is a name"),
]

# A head that is already invalid is refused as soon as the offending line is complete (or, for
# a bare CR, as soon as the byte after it arrives), not at the end of the head or at the header
# timeout. Each raw ends right there: nothing more is sent.
EARLY = [
    early("early-cl-overflow", b("POST /calculate HTTP/1.1\r\n" + HOST
          + "Content-Length: 1000000000000000000000\r\n"), 400, "rfc9112 §6.3 (5)"),
    early("early-cl-conflict", b("POST /calculate HTTP/1.1\r\n" + HOST
          + "Content-Length: 1\r\nContent-Length: 2\r\n"), 400, "rfc9112 §6.3 (5)"),
    early("early-cl-over-limit", b("POST /calculate HTTP/1.1\r\n" + HOST
          + f"Content-Length: {_LIMIT_BODY + 1}\r\n"), 413, "limit: MAX_BODY_SIZE"),
    early("early-bare-cr-request-line", b"GET /healthz HTTP/1.1\rLine: 1", 400, "rfc9112 §2.2"),
    early("early-bare-cr-field", b("GET /healthz HTTP/1.1\r\n" + HOST + "X-A: 1\rX"), 400,
          "rfc9112 §2.2"),
    early("early-cr-cr", b("GET /healthz HTTP/1.1\r\n" + HOST + "X-A: 1\r\r"), 400,
          "rfc9112 §2.2"),
    early("early-bare-lf", b("GET /healthz HTTP/1.1\r\n" + HOST + "X-A: 1\n"), 400,
          "rfc9112 §2.2"),
    early("early-obs-fold", b("GET /healthz HTTP/1.1\r\n" + HOST + "X-A: 1\r\n folded\r\n"),
          400, "rfc9112 §5.2"),
    early("early-indented-first-field", b("GET /healthz HTTP/1.1\r\n " + HOST), 400,
          "rfc9112 §2.2"),
    early("early-junk-line", b("GET /healthz HTTP/1.1\r\n" + HOST + "junk\r\n"), 400,
          "rfc9112 §5.1"),
    early("early-space-before-colon", b("GET /healthz HTTP/1.1\r\n" + HOST + "X-A : 1\r\n"),
          400, "rfc9112 §5.1 MUST"),
    early("early-nul", b("GET /healthz HTTP/1.1\r\n" + HOST + "X-A: a\x00b\r\n"), 400,
          "rfc9110 §5.5 MUST"),
    early("early-second-host", b("GET /healthz HTTP/1.1\r\n" + HOST + "Host: x.test\r\n"), 400,
          "rfc9112 §3.2 MUST"),
    early("early-invalid-host", b"GET /healthz HTTP/1.1\r\nHost: a b\r\n", 400,
          "rfc9112 §3.2 MUST"),
    early("early-te-chunked-gzip", b("POST /calculate HTTP/1.1\r\n" + HOST
          + "Transfer-Encoding: chunked, gzip\r\n"), 400, "rfc9112 §6.3 MUST"),
    early("early-te-and-cl", b("POST /calculate HTTP/1.1\r\n" + HOST
          + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"), 400, "rfc9112 §6.1"),
    early("early-te-http10", b"POST /calculate HTTP/1.0\r\nTransfer-Encoding: chunked\r\n", 400,
          "rfc9112 §6.1 MUST"),
    early("early-expectation", b("POST /calculate HTTP/1.1\r\n" + HOST + "Expect: teapot\r\n"),
          417, "rfc9110 §10.1.1"),
    early("early-malformed-request-line", b"GET  /healthz HTTP/1.1\r\n", 400, "rfc9112 §3"),
    early("early-version", b"GET /healthz HTTP/2.0\r\n", 505, "rfc9110 §15.6.6"),
    early("early-target-char", b'GET /healthz?a"b HTTP/1.1\r\n', 400, "rfc9112 §3.2"),
    early("early-connect", b"CONNECT calc.test:443 HTTP/1.1\r\n", 501, "rfc9110 §9.3.6"),
    # The same in the chunked framing, where the body timeout would fire otherwise.
    early("early-chunk-size-bare-cr", post_chunked(b"3;a\rb"), 400, "rfc9112 §2.2", body=True),
    early("early-trailer-bare-cr", post_chunked(b"3\r\n1+1\r\n0\r\nX-T: a\rb"), 400,
          "rfc9112 §2.2", body=True),
]

PIPELINING = [
    seq("pipe-two", get() + get(), [200, 200], False, RFC),
    seq("pipe-ten", get() * 10, [200] * 10, False, RFC),
    seq("pipe-after-connection-close", get(extra="Connection: close\r\n") + get(), [200], True,
        "rfc9112 §9.6: ignore what follows"),
    seq("pipe-after-close-uppercase", get(extra="Connection: CLOSE\r\n") + get(), [200], True,
        "tokens are case-insensitive"),
    seq("pipe-after-close-in-list", get(extra="Connection: foo, close\r\n") + get(), [200], True,
        RFC),
    seq("pipe-after-http10", get(version="1.0") + get(), [200], True, "1.0 without keep-alive"),
    seq("pipe-http10-keepalive", get(version="1.0", extra="Connection: keep-alive\r\n") + get(),
        [200, 200], False, "1.0 keep-alive"),
    seq("pipe-after-error", b"GET /healthz HTTP/1.1\r\n\r\n" + get(), [400], True,
        "nothing after an error"),
    seq("pipe-post-then-get", post_cl(b"1+1") + get(), [200, 200], False, RFC),
    seq("pipe-chunked-then-get", post_chunked(GOOD_CHUNKS) + get(), [200, 200], False, RFC),
    seq("pipe-chunked-trailer-then-get", post_chunked(b"3\r\n1+1\r\n0\r\nX: y\r\n\r\n") + get(),
        [200, 200], False, RFC),
    seq("pipe-head-then-get", b"HEAD /healthz HTTP/1.1\r\n" + b(HOST) + b"\r\n" + get(),
        [200, 200], False, "HEAD has no body on the wire", head_only=(0,)),
    seq("pipe-smuggled-in-cl-body", post_cl(get(), cl=str(len(get()))) + get(), [{200, 422},
        200], False, "a request inside a body is data"),
    seq("pipe-upgrade-ignored", get(extra="Connection: Upgrade\r\nUpgrade: websocket\r\n")
        + get(), [200, 200], False, "no upgrade support: plain 1.1"),
    seq("pipe-good-then-garbage", get() + b"\x00\x01\x02\r\n\r\n", [200, 400], True, GARDEN),
]

CASES: list[Case] = [
    *REQUEST_LINE,
    *HEADER_SYNTAX,
    *HOST_RULES,
    *CONTENT_LENGTH,
    *TRANSFER_ENCODING,
    *CHUNKED,
    *EXPECT_AND_METHODS,
    *REQUEST_TARGET,
    *PATHS,
    *EARLY,
    *PIPELINING,
]
assert len({case.name for case in CASES}) == len(CASES), "case names must be unique"

# --------------------------------------------------------------------------------------------
# Replaying a case
# --------------------------------------------------------------------------------------------

PROBE = get()


@dataclass
class Outcome:
    responses: list[RawResponse]
    closed: bool  # EOF (or reset) seen after the responses
    extra: bytes  # bytes that arrived after the expected responses (should be none)
    probe_status: int | None  # status of a follow-up request on the same connection, if sent
    elapsed: float  # seconds from the end of the write to the first complete response


def read_final(sock: socket.socket, buffer: bytearray, *, head_only: bool = False) -> RawResponse:
    """Read one response, skipping interim 1xx ones."""
    while True:
        response = read_response(sock, buffer, head_only=head_only)
        if response.status >= 200:
            return response


def wait_closed(sock: socket.socket, buffer: bytearray, timeout: float) -> tuple[bool, bytes]:
    """Wait up to `timeout` for EOF; returns (closed, bytes that came before it)."""
    sock.settimeout(timeout)
    extra = bytes(buffer)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True, extra
            extra += data
    except (ConnectionResetError, BrokenPipeError):
        return True, extra
    except TimeoutError:
        return False, extra


def replay(address: tuple[str, int], case: Case, *, timeout: float = 10.0,
           close_wait: float = 5.0) -> Outcome:
    """Send a case in one write, read its responses, then check what the connection does next."""
    with socket.create_connection(address, timeout=timeout) as sock:
        # A server may answer an oversize head and close before we finish writing.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(case.raw)
        sent = time.perf_counter()
        buffer = bytearray()
        responses = [read_final(sock, buffer, head_only=0 in case.head_only)]
        elapsed = time.perf_counter() - sent
        for index in range(1, len(case.statuses)):
            responses.append(read_final(sock, buffer, head_only=index in case.head_only))
        says_close = (responses[-1].header("connection") or "").lower() == "close"
        if case.close or says_close:
            closed, extra = wait_closed(sock, buffer, close_wait)
            return Outcome(responses, closed, extra, None, elapsed)
        sock.sendall(PROBE)
        probe = read_final(sock, buffer)
        return Outcome(responses, False, bytes(buffer), probe.status, elapsed)


# --------------------------------------------------------------------------------------------
# Watching a server process from outside (Linux /proc)
# --------------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def settle(pid: int, baseline_fds: int, baseline_threads: int, timeout: float = 10.0,
           slack: int = 0) -> tuple[int, int]:
    """Wait until fd and thread counts come back to baseline (+slack); returns the last counts."""
    deadline = time.monotonic() + timeout
    fds, threads = fd_count(pid), thread_count(pid)
    while time.monotonic() < deadline:
        fds, threads = fd_count(pid), thread_count(pid)
        if fds <= baseline_fds + slack and threads <= baseline_threads + slack:
            break
        time.sleep(0.1)
    return fds, threads


# A request served is not an incident: access-log lines (CLF `"GET / HTTP/1.1" 200 123` or JSON
# with a "status") are left out when the hardening tests count log lines.
_ACCESS_LINE = re.compile(r'" \d{3} (\d+|-)$|"status": ?\d{3}')


def incident_lines(log: str) -> list[str]:
    """Log lines that are not access-log lines (warnings, errors, tracebacks, ...)."""
    return [line for line in log.splitlines() if line.strip() and not _ACCESS_LINE.search(line)]


def healthz_latency(address: tuple[str, int], timeout: float = 10.0) -> float:
    """Seconds for one fresh-connection GET /healthz; raises unless the answer is 200."""
    start = time.perf_counter()
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(PROBE)
        response = read_final(sock, bytearray())
    elapsed = time.perf_counter() - start
    if response.status != 200:
        raise AssertionError(f"healthz answered {response.status}")
    return elapsed
