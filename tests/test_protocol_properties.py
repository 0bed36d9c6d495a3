"""Properties of app.protocol under hypothesis.

- Feeding the same bytes whole, one byte at a time, or in random splits gives the same requests
  or the same error status.
- No input raises anything but ProtocolError.
- On generated valid requests, h11 (a test-only dependency) sees the same method, target,
  headers and body.
"""

from __future__ import annotations

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.protocol import CLOSED, NEED_DATA, Connection, ExpectContinue, ProtocolError, Request

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Outcome = tuple[tuple[Request, ...], int | None]


def feed(pieces: list[bytes]) -> Outcome:
    """Requests produced and the error status (None if none) for `pieces` then EOF."""
    conn = Connection()
    requests: list[Request] = []
    try:
        for piece in [*pieces, b""]:
            conn.receive_data(piece)
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    break
                if event is CLOSED:
                    return tuple(requests), None
                if isinstance(event, ExpectContinue):
                    continue
                assert isinstance(event, Request)
                requests.append(event)
    except ProtocolError as err:
        assert err.status in {400, 413, 414, 417, 431, 501, 505}
        return tuple(requests), err.status
    raise AssertionError("EOF must end in CLOSED or an error")


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
paths = st.lists(st.text(alphabet="abcXYZ019-._~%!$&'()*+,;=:@", max_size=6), max_size=4).map(
    lambda parts: "/" + "/".join(parts)
)
queries = st.one_of(st.just(""), st.text(alphabet="abc=&%+/?019", max_size=10).map("?".__add__))


@st.composite
def valid_requests(draw: st.DrawFn) -> tuple[bytes, str, str, list[tuple[str, str]], bytes]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", draw(tokens)]))
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
MUTATIONS = [b"\n", b"\r", b"\0", b" ", b"\t", b":", b"\r\n", b"0", b"\xff", b"HTTP/1.1", b";"]


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
    assert feed([bytes([b]) for b in data]) == whole
    assert feed(split_at(data, cuts)) == whole


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
