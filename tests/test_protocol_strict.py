"""Strictness to the letter (issue 15): refuse at the first offending line, with the RFC's status.

Each row is written from the RFC text it cites. For the early-rejection rows, `proof` is a head
cut right after the byte that makes it invalid whatever follows (the LF of the offending line,
or the byte after a bare CR): fed that much, and no more, the core must raise at once; one byte
less, it must wait; and the whole request, fed whole or byte by byte, must give the very same
error.
"""

from __future__ import annotations

import pytest

from app.protocol import (
    MAX_BODY_SIZE,
    NEED_DATA,
    Connection,
    ExpectContinue,
    ProtocolError,
    Request,
    parse_head,
)

H = b"Host: calc.test\r\n"
GET = b"GET /healthz HTTP/1.1\r\n" + H
POST = b"POST /calculate HTTP/1.1\r\n" + H
CHUNKED = POST + b"Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"


def refusal(data: bytes, *, eof: bool = False, step: int = 0) -> ProtocolError | None:
    """The error `data` (whole or `step` bytes at a time, then EOF if `eof`) raises, if any."""
    conn = Connection()
    pieces = [data] if not step else [data[i : i + step] for i in range(0, len(data), step)]
    try:
        for piece in [*pieces, b""] if eof else pieces:
            conn.receive_data(piece)
            while (event := conn.next_event()) is not NEED_DATA:
                assert isinstance(event, Request | ExpectContinue), event
    except ProtocolError as err:
        return err
    return None


# (name, proof, the rest of the request, status, words of the message, RFC)
EARLY: list[tuple[str, bytes, bytes, int, str, str]] = [
    ("CL 22 digits", POST + b"Content-Length: 1000000000000000000000\r\n", b"\r\n1+1", 400,
     "1 to 19 ASCII digits", "rfc9112 6.3 (5)"),
    ("CL 20 nines", POST + b"Content-Length: 99999999999999999999\r\n", b"\r\n", 400,
     "1 to 19 ASCII digits", "rfc9112 6.3 (5)"),
    ("second CL differs", POST + b"Content-Length: 1\r\nContent-Length: 2\r\n", b"\r\n12", 400,
     "conflicting Content-Length", "rfc9112 6.3 (5)"),
    ("CL over the body limit", POST + b"Content-Length: %d\r\n" % (MAX_BODY_SIZE + 1), b"\r\n",
     413, "body larger", "rfc9110 15.5.14"),
    ("bare CR in request line", b"GET /healthz HTTP/1.1\rL", b"ine: 1\r\n\r\n", 400, "bare CR",
     "rfc9112 2.2"),
    ("bare CR in a field", GET + b"X-A: 1\rX", b"-B: 2\r\n\r\n", 400, "bare CR", "rfc9112 2.2"),
    ("CR CR LF", GET + b"X-A: 1\r\r", b"\n\r\n", 400, "bare CR", "rfc9112 2.2"),
    ("bare CR first byte", b"\rG", b"ET /healthz HTTP/1.1\r\n" + H + b"\r\n", 400, "bare CR",
     "rfc9112 2.2"),
    ("bare LF in a field", GET + b"X-A: 1\n", b"\r\n", 400, "bare LF", "rfc9112 2.2"),
    ("obs-fold", GET + b"X-A: 1\r\n folded\r\n", b"\r\n", 400, "obsolete line folding",
     "rfc9112 5.2"),
    ("obs-fold with HTAB", GET + b"X-A: 1\r\n\tfolded\r\n", b"\r\n", 400,
     "obsolete line folding", "rfc9112 5.2"),
    ("whitespace before the first field", b"GET /healthz HTTP/1.1\r\n " + H, b"\r\n", 400,
     "obsolete line folding", "rfc9112 2.2"),
    ("junk between lines", GET + b"junk\r\n", b"X-A: 1\r\n\r\n", 400, "without a colon",
     "rfc9112 5.1"),
    ("space before colon", GET + b"X-A : 1\r\n", b"\r\n", 400, "whitespace between",
     "rfc9112 5.1 MUST"),
    ("NUL in a value", GET + b"X-A: a\x00b\r\n", b"\r\n", 400, "NUL", "rfc9110 5.5 MUST"),
    ("DEL in a value", GET + b"X-A: a\x7fb\r\n", b"\r\n", 400, "invalid header field",
     "rfc9110 5.5"),
    ("second Host", GET + b"Host: other.test\r\n", b"\r\n", 400, "more than one Host",
     "rfc9112 3.2 MUST"),
    ("invalid Host", b"GET /healthz HTTP/1.1\r\nHost: a b\r\n", b"\r\n", 400, "invalid Host",
     "rfc9112 3.2 MUST"),
    ("chunked, gzip", POST + b"Transfer-Encoding: chunked, gzip\r\n", b"\r\n", 400,
     "not the final transfer coding", "rfc9112 6.3 MUST"),
    ("chunked then gzip", POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
     b"\r\n", 400, "not the final transfer coding", "rfc9112 6.3 MUST"),
    ("chunked twice", POST + b"Transfer-Encoding: chunked, chunked\r\n", b"\r\n0\r\n\r\n", 400,
     "more than once", "rfc9112 7.1 MUST NOT"),
    ("TE then CL", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", b"\r\n", 400,
     "both", "rfc9112 6.1"),
    ("CL then TE", POST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", b"\r\n", 400,
     "both", "rfc9112 6.1"),
    ("TE in HTTP/1.0", b"POST /calculate HTTP/1.0\r\nTransfer-Encoding: chunked\r\n", b"\r\n",
     400, "HTTP/1.0", "rfc9112 6.1 MUST"),
    ("malformed TE", POST + b"Transfer-Encoding: chunked;\r\n", b"\r\n", 400, "malformed",
     "rfc9112 7"),
    ("unsupported expectation", POST + b"Expect: teapot\r\n", b"Content-Length: 1\r\n\r\nx", 417,
     "expectation", "rfc9110 10.1.1"),
    ("malformed request line", b"GET  /healthz HTTP/1.1\r\n", H + b"\r\n", 400,
     "malformed request line", "rfc9112 3"),
    ("version 2.0", b"GET /healthz HTTP/2.0\r\n", H + b"\r\n", 505, "version", "rfc9110 15.6.6"),
    ("target with a quote", b'GET /healthz?a"b HTTP/1.1\r\n', H + b"\r\n", 400,
     "invalid request-target", "rfc9112 3.2 / rfc3986 2"),
    ("target with a bad escape", b"GET /calculate?expr=%zz HTTP/1.1\r\n", H + b"\r\n", 400,
     "invalid request-target", "rfc3986 2.1"),
    ("CONNECT", b"CONNECT calc.test:443 HTTP/1.1\r\n", H + b"\r\n", 501, "not a proxy",
     "rfc9112 3.2.3 / rfc9110 9.3.6"),
    ("asterisk for GET", b"GET * HTTP/1.1\r\n", H + b"\r\n", 400, "asterisk", "rfc9112 3.2.4"),
    # The same rule in the chunked framing: a bare CR is refused by the byte after it.
    ("bare CR in a chunk size line", CHUNKED + b"3;a\rb", b"\r\n1+1\r\n0\r\n\r\n", 400,
     "bare CR", "rfc9112 2.2"),
    ("bare CR in a trailer", CHUNKED + b"0\r\nX-T: a\rb", b"\r\n\r\n", 400, "bare CR",
     "rfc9112 2.2"),
]


@pytest.mark.parametrize(("proof", "rest", "status", "words"), [r[1:5] for r in EARLY],
                         ids=[r[0] for r in EARLY])
def test_refused_by_the_byte_that_proves_it(proof: bytes, rest: bytes, status: int,
                                            words: str) -> None:
    err = refusal(proof)
    assert err is not None, "waited for the end of the head"
    assert (err.status, err.close) == (status, True) and words in err.message, err
    assert refusal(proof[:-1]) is None  # one byte before the proof: still waiting
    for step in (0, 1, 3):  # the whole request, whole or split: the very same error
        whole = refusal(proof + rest, eof=True, step=step)
        assert whole is not None and (whole.status, whole.message) == (err.status, err.message)


def test_a_trickled_head_is_refused_with_its_bad_line() -> None:
    # Many reads of one long, valid field line, then the line that is wrong: the error arrives
    # with that line, and the fields before it were not refused on the way.
    conn = Connection()
    head = GET + b"X-Long: " + b"v" * 5000 + b"\r\n"
    for i in range(len(head)):
        conn.receive_data(head[i : i + 1])
        assert conn.next_event() is NEED_DATA
    conn.receive_data(b"X-B : 1\r")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"\n")
    with pytest.raises(ProtocolError, match="whitespace between"):
        conn.next_event()


# --- request-target characters (RFC 9112 3.2, RFC 3986 2 and 3.3-3.4) -------------------------

# Visible ASCII that RFC 3986 does not allow in a path or query, unencoded.
NOT_IN_RFC3986 = ['"', "<", ">", "\\", "^", "`", "{", "|", "}", "[", "]", "#"]


@pytest.mark.parametrize(
    "target",
    [f"/healthz?a={c}" for c in NOT_IN_RFC3986] + [f"/a{c}b" for c in NOT_IN_RFC3986]
    + ["/%", "/%4", "/%G1", "/a%2", "/calculate?expr=%zz", "/a%%41",
       "http://calc.test/%zz", "http://calc.test/a|b", "http://u@calc.test/",
       "http://calc.test/?a]"],
)
def test_a_target_outside_rfc3986_is_400(target: str) -> None:
    err = refusal(b"GET " + target.encode() + b" HTTP/1.1\r\n")
    assert err is not None and err.status == 400 and err.close, (target, err)


@pytest.mark.parametrize(
    "byte", [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0x80, 0xA0, 0xC3, 0xFF]
)
def test_controls_and_raw_non_ascii_in_a_target_are_400(byte: int) -> None:
    # CR and LF end the line and SP splits it: those three are covered by the request-line rows.
    err = refusal(b"GET /a" + bytes([byte]) + b"b HTTP/1.1\r\n")
    assert err is not None and err.status == 400, hex(byte)


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("/a-._~!$&'()*+,;=:@b", "/a-._~!$&'()*+,;=:@b", ""),
        ("/%41%2F%2e%00%c3%A9", "/%41%2F%2e%00%c3%A9", ""),
        ("/p?q=/a?b&c=%7E", "/p", "q=/a?b&c=%7E"),
        ("//double//slashes/", "//double//slashes/", ""),
        ("http://[::1]:8080/x?y", "/x", "y"),
        ("http://calc.test?q", "/", "q"),
        ("HTTP://calc.test:80", "/", ""),
    ],
)
def test_targets_rfc3986_allows_are_kept_as_sent(target: str, path: str, query: str) -> None:
    head = parse_head(b"GET " + target.encode() + b" HTTP/1.1\r\n" + H + b"\r\n")
    assert (head.target, head.path, head.query) == (target, path, query)


def test_connect_needs_authority_form_and_is_not_implemented() -> None:
    for target, status in [(b"calc.test:443", 501), (b"[::1]:443", 501), (b"/healthz", 400),
                           (b"*", 400), (b"http://calc.test/", 400), (b"calc.test", 400)]:
        err = refusal(b"CONNECT " + target + b" HTTP/1.1\r\n" + H + b"\r\n")
        assert err is not None and (err.status, err.close) == (status, True), target


# --- Transfer-Encoding: the final coding decides (RFC 9112 6.1, 6.3, 7) ----------------------


@pytest.mark.parametrize(
    ("codings", "status"),
    [
        (b"gzip", 400),  # chunked absent, so not final: 6.3 MUST 400
        (b"identity", 400),
        (b"chunkedx", 400),
        (b"", 400),
        (b"chunked;q=1", 400),  # a coding named chunked with a parameter is not chunked
        (b"chunked, gzip", 400),
        (b"chunked, chunked", 400),  # 7.1: MUST NOT apply chunked more than once
        (b"gzip, chunked", 501),  # chunked final: the framing is known, gzip is not (6.1 SHOULD)
        (b"deflate, chunked", 501),
        (b'x;a="1,2", chunked', 501),  # a quoted parameter may hold a comma
        (b"gzip,,chunked", 501),  # empty list elements are ignored (RFC 9110 5.6.1)
        (b"chunked\x0b", 400),
        (b"chunked\xa0", 400),
    ],
)
def test_transfer_codings(codings: bytes, status: int) -> None:
    raw = POST + b"Transfer-Encoding: " + codings + b"\r\n\r\n3\r\n1+1\r\n0\r\n\r\n"
    for step in (0, 1):
        err = refusal(raw, eof=True, step=step)
        assert err is not None and (err.status, err.close) == (status, True), (codings, err)


@pytest.mark.parametrize("codings", [b"chunked", b"CHUNKED", b" , chunked , ", b"ChUnKeD"])
def test_chunked_alone_is_fine(codings: bytes) -> None:
    raw = POST + b"Transfer-Encoding: " + codings + b"\r\n\r\n3\r\n1+1\r\n0\r\n\r\n"
    conn = Connection()
    conn.receive_data(raw)
    event = conn.next_event()
    assert isinstance(event, Request) and event.body == b"1+1"


def test_bare_lf_then_cr_is_one_error_however_fed() -> None:
    # Found by the property test: a negative end given to bytes.find counts from the end.
    assert refusal(b"\n\r\x00", eof=True) is not None
    whole, split = refusal(b"\n\r\x00", eof=True), refusal(b"\n\r\x00", eof=True, step=1)
    assert whole is not None and split is not None and whole.message == split.message
    assert "bare LF" in whole.message


@pytest.mark.parametrize(("target", "says"), [
    ("/calculate?expr=2^10", "'^' at 17 must be percent-encoded as %5E"),
    ('/a"b', "'\"' at 2 must be percent-encoded as %22"),
    ("/a%zz", "malformed %-escape at 2"),
])
def test_a_refused_target_names_the_character_and_its_escape(target: str, says: str) -> None:
    conn = Connection()
    conn.receive_data(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    with pytest.raises(ProtocolError) as refused:
        conn.next_event()
    assert refused.value.status == 400 and says in str(refused.value)
