"""Table tests for app.protocol: bytes in, requests or errors out, one row per rule of issue 3."""

from __future__ import annotations

import pytest

from app.protocol import (
    CLOSED,
    CONTINUE_BYTES,
    MAX_BODY_SIZE,
    MAX_HEAD_SIZE,
    MAX_HEADER_COUNT,
    MAX_REQUEST_LINE,
    NEED_DATA,
    ChunkedDecoder,
    Connection,
    ExpectContinue,
    HeadScanner,
    Phase,
    ProtocolError,
    Request,
    Response,
    error_response,
    http_date,
    parse_head,
    render,
    timeout_error,
)

Event = Request | ExpectContinue | ProtocolError | str


def run(
    data: bytes, *, eof: bool = True, step: int = 0, max_body_size: int = MAX_BODY_SIZE
) -> list[Event]:
    """Feed `data` (whole, or `step` bytes at a time) then EOF; collect events until CLOSED."""
    conn = Connection(max_body_size=max_body_size)
    pieces = [data] if step == 0 else [data[i : i + step] for i in range(0, len(data), step)]
    if eof:
        pieces.append(b"")
    out: list[Event] = []
    try:
        for piece in pieces:
            conn.receive_data(piece)
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    break
                if event is CLOSED:
                    out.append("CLOSED")
                    return out
                assert isinstance(event, Request | ExpectContinue)
                out.append(event)
    except ProtocolError as err:
        out.append(err)
    return out


def one(data: bytes, **kwargs: int) -> Request:
    events = [e for e in run(data, **kwargs) if not isinstance(e, ExpectContinue)]
    assert isinstance(events[0], Request), events
    return events[0]


def error(data: bytes, **kwargs: int) -> ProtocolError:
    events = run(data, **kwargs)
    assert isinstance(events[-1], ProtocolError), events
    return events[-1]


H = b"Host: example.com\r\n"


# --- valid requests ---


def test_simple_get() -> None:
    req = one(b"GET /calculate?expr=1%2B2 HTTP/1.1\r\n" + H + b"Accept:  */* \t\r\n\r\n")
    assert (req.method, req.target, req.path, req.query, req.version) == (
        "GET",
        "/calculate?expr=1%2B2",
        "/calculate",
        "expr=1%2B2",
        "1.1",
    )
    assert req.headers == (("host", "example.com"), ("accept", "*/*"))
    assert req.body == b"" and req.keep_alive and req.trailers == ()
    assert req.header("accept") == "*/*" and req.header("missing") is None


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        (b"/", "/", ""),
        (b"/a/b?", "/a/b", ""),
        (b"/a?x=1?y=2", "/a", "x=1?y=2"),
        (b"http://example.com", "/", ""),
        (b"http://example.com:8080/p?q", "/p", "q"),
        (b"HTTPS://example.com?q", "/", "q"),
    ],
)
def test_target_forms(target: bytes, path: str, query: str) -> None:
    req = one(b"GET " + target + b" HTTP/1.1\r\n" + H + b"\r\n")
    assert (req.target, req.path, req.query) == (target.decode(), path, query)


def test_options_asterisk() -> None:
    assert one(b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n").path == "*"


def test_content_length_body_and_identical_duplicates() -> None:
    req = one(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\ncontent-length: 5\r\n\r\nhello")
    assert req.body == b"hello"


def test_obs_text_and_empty_values_are_kept() -> None:
    req = one(b"GET / HTTP/1.1\r\n" + H + b"X-A:\r\nX-B: caf\xe9  latte\r\n\r\n")
    assert req.headers[1:] == (("x-a", ""), ("x-b", "caf\xe9  latte"))


def test_chunked_body_with_extensions_and_trailers() -> None:
    req = one(
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: ChUnKeD\r\n\r\n"
        b'5;name=value;q="a \\" b"\r\nhello\r\nA \t; x\r\n0123456789\r\n0\r\n'
        b"X-Checksum: abc\r\n\r\n"
    )
    assert req.body == b"hello0123456789"
    assert req.trailers == (("x-checksum", "abc"),)
    assert all(name != "x-checksum" for name, _ in req.headers)


def test_pipelined_requests_in_order() -> None:
    data = b"".join(b"GET /%d HTTP/1.1\r\n" % i + H + b"\r\n" for i in range(5))
    assert [e.path for e in run(data) if isinstance(e, Request)] == [f"/{i}" for i in range(5)]


def test_leading_empty_lines_are_ignored() -> None:
    assert one(b"\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n").path == "/"


# --- keep-alive ---


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"1.1", b"", True),
        (b"1.1", b"Connection: close\r\n", False),
        (b"1.1", b"Connection: Keep-Alive, CLOSE\r\n", False),
        (b"1.0", b"", False),
        (b"1.0", b"Connection: keep-alive\r\n", True),
        (b"1.0", b"Connection: foo,  Keep-Alive\r\n", True),
    ],
)
def test_keep_alive(version: bytes, connection: bytes, keep_alive: bool) -> None:
    assert (
        one(b"GET / HTTP/" + version + b"\r\n" + H + connection + b"\r\n").keep_alive is keep_alive
    )


def test_no_request_after_connection_close() -> None:
    data = (
        b"GET /1 HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\nGET /2 HTTP/1.1\r\n" + H + b"\r\n"
    )
    events = run(data, eof=False)
    assert [e.path for e in events if isinstance(e, Request)] == ["/1"]
    assert events[-1] == "CLOSED"


def test_http10_without_host_is_fine() -> None:
    req = one(b"GET / HTTP/1.0\r\n\r\n")
    assert req.version == "1.0" and not req.keep_alive


# --- malformed requests: (raw bytes, status) ---

BAD: list[tuple[str, bytes, int]] = [
    ("lower-case version", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    ("version 1.32", b"GET / HTTP/1.32\r\n" + H + b"\r\n", 400),
    ("version 2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("version 1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", 505),
    ("version 0.9 style", b"GET /\r\n\r\n", 400),
    ("two spaces", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("tab separator", b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("method not a token", b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("relative target", b"GET foo HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("fragment in target", b"GET /#x HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("asterisk not OPTIONS", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("authority-form", b"GET example.com:80 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("other scheme", b"GET ftp://x/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\n" + H + b"Content-Length : 5\r\n\r\nhello", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", 400),
    ("bare LF header", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\n\r\n", 400),
    ("bare LF request line", b"GET / HTTP/1.1\n" + H + b"\r\n", 400),
    ("bare CR", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400),
    ("NUL in value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\0b\r\n\r\n", 400),
    ("no colon", b"GET / HTTP/1.1\r\n" + H + b"X-A\r\n\r\n", 400),
    ("empty name", b"GET / HTTP/1.1\r\n" + H + b": x\r\n\r\n", 400),
    ("no host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two hosts", b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", 400),
    ("bad host", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("CL plus", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", 400),
    ("CL underscore", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1_0\r\n\r\n0123456789", 400),
    ("CL hex", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello", 400),
    ("CL negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    ("CL list", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello", 400),
    ("CL arabic digit", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: \xd9\xa5\r\n\r\n", 400),
    (
        "CL 20 digits",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: " + b"1" * 20 + b"\r\n\r\n",
        400,
    ),
    (
        "CL conflict",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
        400,
    ),
    ("CL too big", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1048577\r\n\r\n", 413),
    # RFC 9112 6.3: chunked not the final coding (here: absent) is 400; 6.1: an unknown coding
    # before a final chunked is 501.
    ("TE gzip", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    (
        "TE chunked, gzip",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
        400,
    ),
    (
        "TE deflate, chunked",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: deflate, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    (
        "TE twice",
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "TE + CL",
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("TE in 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (
        "chunk 0x5",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk +5",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk space",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk ext bare CR",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5;ext\rX\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk ext bare LF",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"5;ext\nX\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk size LF",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\n\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk data no CRLF",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        400,
    ),
    (
        "chunk data LF only",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
        400,
    ),
    (
        "chunk 17 hex digits",
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"0" * 16
        + b"5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunked too big",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n100001\r\n",
        413,
    ),
    (
        "trailer bad",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX : y\r\n\r\n",
        400,
    ),
    (
        "trailer CL",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"0\r\nContent-Length: 5\r\n\r\n",
        400,
    ),
    (
        "expect unknown",
        b"POST / HTTP/1.1\r\n" + H + b"Expect: 200-ok\r\nContent-Length: 1\r\n\r\nx",
        417,
    ),
    (
        "request line too long",
        b"GET /" + b"a" * MAX_REQUEST_LINE + b" HTTP/1.1\r\n" + H + b"\r\n",
        414,
    ),
    (
        "head too big",
        b"GET / HTTP/1.1\r\n" + H + b"X-A: " + b"a" * MAX_HEAD_SIZE + b"\r\n\r\n",
        431,
    ),
    ("too many fields", b"GET / HTTP/1.1\r\n" + H + b"X: y\r\n" * MAX_HEADER_COUNT + b"\r\n", 431),
    ("EOF mid head", b"GET / HTTP/1.1\r\nHost: x", 400),
    ("EOF mid body", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\nhello", 400),
    (
        "EOF mid chunk",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhel",
        400,
    ),
]


@pytest.mark.parametrize(("raw", "status"), [(r, s) for _, r, s in BAD], ids=[n for n, _, _ in BAD])
@pytest.mark.parametrize("step", [0, 1, 7])
def test_bad_requests(raw: bytes, status: int, step: int) -> None:
    err = error(raw, step=step)
    assert err.status == status
    assert err.close



TLS_CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32))


@pytest.mark.parametrize(
    "opening",
    [TLS_CLIENT_HELLO, b"\x00", b"G\x16", b"GET\x00", b"\r\n\x16", b"\xef\xbb\xbfGET / HTTP/1.1"],
    ids=["tls-hello", "nul", "binary-in-method", "nul-after-method", "after-empty-line", "bom"],
)
def test_a_method_that_is_not_a_token_is_refused_on_its_first_bytes(opening: bytes) -> None:
    """No line end, no timeout wait: a TLS handshake on the plain port gets its 400 at once."""
    conn = Connection()
    conn.receive_data(opening)  # no CRLF anywhere: before, this waited for the header timeout
    with pytest.raises(ProtocolError) as caught:
        conn.next_event()
    assert caught.value.status == 400 and "method is not a token" in str(caught.value)
    # Whole or split, the same error (the whole-head diagnosis checks the method first too).
    whole = opening + b" / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert str(error(whole)) == str(caught.value) == str(error(whole, step=1))


@pytest.mark.parametrize(
    "opening",
    [b"G", b"GET", b"GET ", b"get /x", b"M-SEARCH", b"\r", b"\r\n", b"\r\nGET", b" /x", b"GET\r",
     b"X" * 200],
)
def test_openings_that_may_still_become_a_request_wait_for_more(opening: bytes) -> None:
    conn = Connection()
    conn.receive_data(opening)
    assert conn.next_event() is NEED_DATA

def test_limits_are_exact() -> None:
    # A request line of exactly MAX_REQUEST_LINE bytes passes; one byte more is 414.
    def line(n: int) -> bytes:
        target = b"/" + b"a" * (n - len(b"GET / HTTP/1.1"))
        return b"GET " + target + b" HTTP/1.1\r\n" + H + b"\r\n"

    assert len(line(MAX_REQUEST_LINE).split(b"\r\n")[0]) == MAX_REQUEST_LINE
    assert one(line(MAX_REQUEST_LINE)).method == "GET"
    assert error(line(MAX_REQUEST_LINE + 1)).status == 414
    fields = b"X: y\r\n" * (MAX_HEADER_COUNT - 1)
    assert one(b"GET / HTTP/1.1\r\n" + H + fields + b"\r\n").method == "GET"
    assert (
        one(
            b"POST / HTTP/1.1\r\n"
            + H
            + b"Content-Length: %d\r\n\r\n" % MAX_BODY_SIZE
            + b"x" * MAX_BODY_SIZE
        ).body
        == b"x" * MAX_BODY_SIZE
    )


def test_head_size_limit_exact() -> None:
    base = b"GET / HTTP/1.1\r\n" + H + b"X: \r\n\r\n"
    fill = MAX_HEAD_SIZE - len(base)
    exact = base.replace(b"X: ", b"X: " + b"a" * fill)
    assert len(exact) == MAX_HEAD_SIZE
    assert one(exact).method == "GET"
    assert error(exact.replace(b"X: ", b"X: a")).status == 431


def test_limits_fire_before_the_head_ends() -> None:
    conn = Connection()
    conn.receive_data(b"GET /" + b"a" * (MAX_REQUEST_LINE + 10))
    with pytest.raises(ProtocolError) as info:
        conn.next_event()
    assert info.value.status == 414
    conn = Connection()
    conn.receive_data(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_SIZE)
    with pytest.raises(ProtocolError) as info:
        conn.next_event()
    assert info.value.status == 431


def test_max_body_size_is_configurable() -> None:
    assert (
        error(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 11\r\n\r\n", max_body_size=10).status
        == 413
    )
    chunked = b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n5\r\n"
    assert error(chunked, max_body_size=10).status == 413


# --- Expect: 100-continue ---


def test_expect_continue_when_body_not_buffered() -> None:
    conn = Connection()
    conn.receive_data(
        b"POST / HTTP/1.1\r\n" + H + b"Expect: 100-Continue\r\nContent-Length: 2\r\n\r\n"
    )
    assert isinstance(conn.next_event(), ExpectContinue)
    assert conn.phase is Phase.BODY
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"hi")
    event = conn.next_event()
    assert isinstance(event, Request) and event.body == b"hi"
    assert CONTINUE_BYTES == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_no_expect_continue_when_body_already_here_or_http10() -> None:
    events = run(
        b"POST / HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"
    )
    assert not any(isinstance(e, ExpectContinue) for e in events)
    events = run(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi")
    assert not any(isinstance(e, ExpectContinue) for e in events)
    events = run(b"GET / HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n\r\n")
    assert not any(isinstance(e, ExpectContinue) for e in events)


# --- phases and EOF ---


def test_phases() -> None:
    conn = Connection()
    assert conn.phase is Phase.IDLE
    conn.receive_data(b"POST / HTTP/1.1\r\n")
    assert conn.next_event() is NEED_DATA and conn.phase is Phase.HEAD
    conn.receive_data(H + b"Content-Length: 3\r\n\r\nab")
    assert conn.next_event() is NEED_DATA and conn.phase is Phase.BODY
    conn.receive_data(b"c")
    assert isinstance(conn.next_event(), Request) and conn.phase is Phase.IDLE
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED and conn.phase is Phase.CLOSED


def test_half_close_after_pipelined_requests_still_answers_all() -> None:
    conn = Connection()
    conn.receive_data(b"GET /1 HTTP/1.1\r\n" + H + b"\r\nGET /2 HTTP/1.1\r\n" + H + b"\r\n")
    conn.receive_data(b"")
    for path in ("/1", "/2"):
        req = conn.next_event()
        assert isinstance(req, Request) and req.path == path
        assert b"Connection: close" not in conn.send(req, Response(200, []))
    assert conn.next_event() is CLOSED


def test_after_error_connection_is_closed() -> None:
    conn = Connection()
    conn.receive_data(b"BAD\r\n\r\n")
    with pytest.raises(ProtocolError):
        conn.next_event()
    assert conn.next_event() is CLOSED and conn.phase is Phase.CLOSED and not conn.keep_alive
    out = conn.send(None, error_response(ProtocolError("nope")))
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close\r\n" in out


# --- serialising ---


def req_of(raw: bytes) -> Request:
    return one(raw)


def test_render_keep_alive_and_close() -> None:
    r11 = req_of(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
    assert render(r11, Response(200, [("Content-Type", "text/plain")], b"hi")) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
    )
    assert b"Connection: close\r\n" in render(r11, Response(200, [], b"", close=True))
    r10 = req_of(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert b"Connection: keep-alive\r\n" in render(r10, Response(200, []))
    r10c = req_of(b"GET / HTTP/1.0\r\n\r\n")
    assert b"Connection: close\r\n" in render(r10c, Response(200, []))


def test_render_head_and_bodiless_statuses() -> None:
    head = req_of(b"HEAD / HTTP/1.1\r\n" + H + b"\r\n")
    out = render(head, Response(200, [], b"12345"))
    assert out.endswith(b"Content-Length: 5\r\n\r\n")
    get = req_of(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
    assert b"Content-Length" not in render(get, Response(304, [("ETag", '"x"')]))
    assert render(get, Response(404, [], b"")).endswith(b"Content-Length: 0\r\n\r\n")


def test_render_date_and_injection_guard() -> None:
    get = req_of(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
    date = http_date(784111777)
    assert date == b"Sun, 06 Nov 1994 08:49:37 GMT"
    assert b"\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n" in render(
        get, Response(200, []), date=date
    )
    with pytest.raises(ValueError):
        render(get, Response(200, [("X", "a\r\nSet-Cookie: evil")]))


def test_send_closing_response_ends_connection() -> None:
    conn = Connection()
    conn.receive_data(b"GET / HTTP/1.1\r\n" + H + b"\r\nGET /2 HTTP/1.1\r\n" + H + b"\r\n")
    req = conn.next_event()
    assert isinstance(req, Request)
    assert conn.keep_alive
    conn.send(req, Response(503, [], close=True))
    assert not conn.keep_alive and conn.next_event() is CLOSED


def test_error_response_body() -> None:
    resp = error_response(ProtocolError("too long", 414))
    assert resp.status == 414 and resp.close
    assert resp.body == b"414 URI Too Long: too long\n"


# --- building blocks for streams drivers ---


def test_parse_head_directly() -> None:
    head = parse_head(b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\n")
    assert head.content_length == 3 and not head.chunked and head.keep_alive
    with pytest.raises(ProtocolError):
        parse_head(b"POST /x HTTP/1.1\r\n" + H)


def test_head_scanner_resumes_and_finishes() -> None:
    data = b"GET / HTTP/1.1\r\nHost: x\r\nA: b"
    scanner = HeadScanner()
    scanner.check(data)
    scanner.check(data + b"\r")  # a CR as the last byte waits for the next one
    head = scanner.finish(data + b"\r\n\r\n")
    assert head == parse_head(data + b"\r\n\r\n")
    assert head.headers == (("host", "x"), ("a", "b"))
    with pytest.raises(ProtocolError, match="bare LF"):
        HeadScanner().check(data + b"\nX")
    bad = HeadScanner()
    bad.check(data + b"\r")
    with pytest.raises(ProtocolError, match="bare CR"):
        bad.check(data + b"\rX")


def test_chunked_decoder_incremental_and_unused() -> None:
    dec = ChunkedDecoder()
    out = b""
    for byte in b"3\r\nabc\r\n0\r\nT: 1\r\n\r\nGET":
        out += dec.feed(bytes([byte]))
    assert out == b"abc" and dec.done and dec.trailers == (("t", "1"),) and dec.unused == b"GET"
    dec.feed(b" /")
    assert dec.unused == b"GET /"


# --- the parsed-head cache and the buffer (same answers however often a head is seen) ---


def test_repeated_head_gives_equal_requests_and_header_lookup() -> None:
    data = b"GET /x?a=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
    first, second = (run(data)[0] for _ in range(2))
    assert isinstance(first, Request) and first == second and first is not second
    assert first.header("x-a") == "1" and first.header("x-b") is None
    built = Request("GET", "/x?a=1", "/x", "a=1", "1.1", first.headers, b"", True)
    assert built == first and hash(built) == hash(first) and built.header("x-a") == "1"
    assert "path='/x'" in repr(first)


def test_cached_head_still_obeys_a_smaller_body_limit() -> None:
    data = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789"
    ok = run(data)[0]
    assert isinstance(ok, Request) and ok.body == b"0123456789"
    err = run(data, max_body_size=9)[0]
    assert isinstance(err, ProtocolError) and err.status == 413
    again = run(data)[0]
    assert isinstance(again, Request) and again.body == b"0123456789"


def test_head_cache_is_bounded() -> None:
    from app import protocol

    for i in range(protocol.HEAD_CACHE_SIZE + 50):
        assert isinstance(run(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i)[0], Request)
    big = b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * protocol.HEAD_CACHE_MAX_BYTES + b"\r\n\r\n"
    assert isinstance(run(big)[0], Request)
    assert len(protocol._HEAD_CACHE) <= protocol.HEAD_CACHE_SIZE
    assert all(len(raw) <= protocol.HEAD_CACHE_MAX_BYTES for raw in protocol._HEAD_CACHE)


@pytest.mark.parametrize("count", [1, 3, 200])
def test_long_pipeline_in_one_read_then_split_reads(count: int) -> None:
    one = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
    conn = Connection()
    conn.receive_data(one * count + one[:20])
    seen = 0
    while (event := conn.next_event()) is not NEED_DATA:
        assert isinstance(event, Request) and event.body == b"abc"
        seen += 1
    assert seen == count and conn.phase is Phase.HEAD
    conn.receive_data(one[20:])
    assert conn.next_event() == Request("POST", "/p", "/p", "", "1.1", (("host", "h"),
                                        ("content-length", "3")), b"abc", True)
    assert conn.next_event() is NEED_DATA


def test_timeout_error_is_one_408_for_every_driver() -> None:
    head = timeout_error(Phase.HEAD, 10.0)
    body = timeout_error(Phase.BODY, 0.5)
    assert (head.status, head.close, body.status, body.close) == (408, True, 408, True)
    assert head.message == "request head not received within 10 s"
    assert body.message == "request body not received within 0.5 s"
    assert error_response(head).body == (
        b"408 Request Timeout: request head not received within 10 s\n")
