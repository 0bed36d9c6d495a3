"""One client suite, every mode: the asyncio server and the four study servers must be equal.

Each mode runs as a real subprocess on port 0 (tests/support.py). The clients are real too: raw
sockets where the exact bytes matter, http.client, and curl when it is installed. Every test is
parametrised over MODES through a module-scoped server, so each mode starts once per fixture.

Where a model truly cannot do something (select's descriptor ceiling) the test carries a
`model_limit(reason)` marker and asserts the documented refusal instead; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.protocol import Connection, ProtocolError, error_response
from tests.support import (
    MODES,
    RawResponse,
    ServerProcess,
    exchange,
    read_response,
    recv_until_closed,
    running_server,
)

STATIC = Path(__file__).resolve().parent.parent / "app" / "static"
CURL = shutil.which("curl")

# Generous: other suites share the 2 cores. The idle-holder test must outlive a loaded run.
MAIN_ARGS = ("--header-timeout", "30", "--keepalive-timeout", "30", "--body-timeout", "30")
# Small: a timeout test must finish in seconds. Lower bounds only; never an upper speed limit.
SHORT = 1.0
SHORT_ARGS = tuple(
    arg for flag in ("header", "keepalive", "body") for arg in (f"--{flag}-timeout", str(SHORT))
)

SELECT_CEILING = (
    "select() watches descriptors below FD_SETSIZE (1024) only; past that the select server "
    "refuses new clients with 503 + Connection: close instead of crashing"
)


def _check_healthy(server: ServerProcess) -> None:
    assert server.proc.poll() is None, f"{server.mode} died:\n{server.stderr_text()[-3000:]}"
    tracebacks = server.stderr_text().count("Traceback")
    assert tracebacks == 0, f"{server.mode} logged tracebacks:\n{server.stderr_text()[-3000:]}"


@pytest.fixture(scope="module", params=MODES)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with running_server(request.param, *MAIN_ARGS) as proc:
        yield proc
        _check_healthy(proc)
        assert proc.stop() == 0, f"{proc.mode}: unclean exit\n{proc.stderr_text()[-3000:]}"


@pytest.fixture(scope="module", params=MODES)
def short_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with running_server(request.param, *SHORT_ARGS) as proc:
        yield proc
        _check_healthy(proc)


# --- helpers -------------------------------------------------------------------------------------


def raw_request(
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    version: str = "1.1",
) -> bytes:
    fields = {"Host": "test", **(headers or {})}
    if body and "Content-Length" not in fields and "Transfer-Encoding" not in fields:
        fields["Content-Length"] = str(len(body))
    lines = [f"{method} {target} HTTP/{version}"] + [f"{k}: {v}" for k, v in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def roundtrip(server: ServerProcess, raw: bytes, *, head_only: bool = False) -> RawResponse:
    with server.connect() as sock:
        sock.sendall(raw)
        return read_response(sock, bytearray(), head_only=head_only)


def get(server: ServerProcess, target: str, **headers: str) -> RawResponse:
    return roundtrip(server, raw_request("GET", target, _names(headers)))


def post(server: ServerProcess, target: str, body: bytes, **headers: str) -> RawResponse:
    return roundtrip(server, raw_request("POST", target, _names(headers), body))


def _names(headers: dict[str, str]) -> dict[str, str]:
    return {name.replace("_", "-").title(): value for name, value in headers.items()}


def as_json(response: RawResponse) -> dict[str, object]:
    assert (response.header("content-type") or "").startswith("application/json"), response
    value = json.loads(response.body)
    assert isinstance(value, dict)
    return value


def says_close(response: RawResponse) -> bool:
    return (response.header("connection") or "").lower() == "close"


def assert_closed(sock: socket.socket) -> None:
    """The server closed: EOF (or a reset), with no further bytes on the wire."""
    assert recv_until_closed(sock) == b""


def healthz_ok(server: ServerProcess) -> None:
    response = get(server, "/healthz")
    assert response.status == 200 and response.body.startswith(b"ok")


def proc_status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def core_error_answer(raw: bytes) -> bytes:
    """What the shared protocol core answers to `raw` when it is a protocol error."""
    conn = Connection()
    conn.receive_data(raw)
    conn.receive_data(b"")
    try:
        while True:
            conn.next_event()
    except ProtocolError as err:
        return conn.send(None, error_response(err), date=b"X")
    raise AssertionError("not a protocol error")


def without_date(raw: bytes) -> bytes:
    return re.sub(rb"(?im)^date: [^\r\n]*\r\n", b"", raw)


# --- the protocol table (DESIGN.md), row by row ---------------------------------------------------


def test_get_page(server: ServerProcess) -> None:
    response = get(server, "/")
    assert response.status == 200
    assert (response.header("content-type") or "").startswith("text/html")
    assert b"<form" in response.body and b"calculate" in response.body


def test_head_page_has_headers_and_no_body(server: ServerProcess) -> None:
    full = get(server, "/")
    with server.connect() as sock:
        # HEAD then GET on one connection: any stray body bytes would corrupt the second answer.
        sock.sendall(raw_request("HEAD", "/") + raw_request("GET", "/healthz"))
        buffer = bytearray()
        head = read_response(sock, buffer, head_only=True)
        after = read_response(sock, buffer)
    assert head.status == 200
    assert head.header("content-length") == full.header("content-length")
    assert head.header("content-type") == full.header("content-type")
    assert after.status == 200 and after.body.startswith(b"ok")


@pytest.mark.parametrize("name", sorted(p.name for p in STATIC.iterdir() if p.is_file()))
def test_static_asset_with_etag(server: ServerProcess, name: str) -> None:
    response = get(server, f"/static/{name}")
    assert response.status == 200
    assert response.body == (STATIC / name).read_bytes()
    etag = response.header("etag")
    assert etag and etag.startswith('"')
    again = get(server, f"/static/{name}", if_none_match=etag)
    assert again.status == 304 and again.body == b""


@pytest.mark.parametrize(
    "target",
    [
        "/static/../pyproject.toml",
        "/static/%2e%2e/pyproject.toml",
        "/static/..%2fpyproject.toml",
        "/static/%2e%2e%2fREADME.md",
        "/static/nope.js",
        "/static//etc/passwd",
    ],
)
def test_static_never_outside(server: ServerProcess, target: str) -> None:
    response = get(server, target)
    assert response.status in (400, 404)
    assert b"[project]" not in response.body and b"root:" not in response.body


def test_form_post_prefers_html(server: ServerProcess) -> None:
    response = post(
        server,
        "/calculate",
        b"expr=6%2A7",
        content_type="application/x-www-form-urlencoded",
        accept="text/html,application/xhtml+xml,*/*;q=0.8",
    )
    assert response.status == 200
    assert (response.header("content-type") or "").startswith("text/html")
    assert b"42" in response.body and b"6*7" in response.body


def test_form_post_without_html_preference_is_json(server: ServerProcess) -> None:
    response = post(
        server, "/calculate", b"expr=1%2B2", content_type="application/x-www-form-urlencoded"
    )
    assert response.status == 200
    assert as_json(response)["result"] == "3"


def test_json_post(server: ServerProcess) -> None:
    response = post(
        server, "/calculate", json.dumps({"expr": "1/3"}).encode(), content_type="application/json"
    )
    assert response.status == 200
    result = as_json(response)
    assert result["expr"] == "1/3"
    assert str(result["result"]).startswith("0.3333")
    assert result["fraction"] == "1/3"


def test_text_post(server: ServerProcess) -> None:
    response = post(server, "/calculate", b"2^10", content_type="text/plain")
    assert response.status == 200
    assert (response.header("content-type") or "").startswith("text/plain")
    assert response.body.strip() == b"1024"


def test_get_calculate_json(server: ServerProcess) -> None:
    response = get(server, "/calculate?expr=" + urllib.parse.quote("(1+2)*3"))
    assert response.status == 200
    assert as_json(response)["result"] == "9"


def test_get_calculate_text(server: ServerProcess) -> None:
    response = get(server, "/calculate?expr=" + urllib.parse.quote("6*7"), accept="text/plain")
    assert response.status == 200
    assert (response.header("content-type") or "").startswith("text/plain")
    assert response.body.strip() == b"42"


def test_unevaluable_expression_is_422(server: ServerProcess) -> None:
    response = get(server, "/calculate?expr=" + urllib.parse.quote("1+*2"))
    assert response.status == 422
    error = as_json(response)["error"]
    assert isinstance(error, dict)
    assert error["kind"] == "syntax"
    assert isinstance(error["message"], str) and error["message"]
    assert error["position"] == 2


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (raw_request("GET", "/calculate"), "no expr"),
        (raw_request("GET", "/calculate?expr=%ZZ"), "bad percent-encoding"),
        (
            raw_request("POST", "/calculate", {"Content-Type": "application/json"}, b"{nope"),
            "bad JSON",
        ),
        (
            raw_request("POST", "/calculate", {"Content-Type": "application/json"}, b'{"x": 1}'),
            "JSON without expr",
        ),
    ],
)
def test_malformed_calculation_is_400(server: ServerProcess, raw: bytes, why: str) -> None:
    assert roundtrip(server, raw).status == 400, why


def test_unsupported_content_type_is_415(server: ServerProcess) -> None:
    response = post(server, "/calculate", b"<expr>1</expr>", content_type="application/xml")
    assert response.status == 415


def test_healthz(server: ServerProcess) -> None:
    healthz_ok(server)


def test_unknown_path_is_404(server: ServerProcess) -> None:
    assert get(server, "/no/such/thing").status == 404


def test_wrong_method_is_405_with_allow(server: ServerProcess) -> None:
    response = roundtrip(server, raw_request("DELETE", "/calculate"))
    assert response.status == 405
    allow = {m.strip() for m in (response.header("allow") or "").split(",")}
    assert {"GET", "POST"} <= allow


# --- connection management ----------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(server: ServerProcess) -> None:
    client = http.client.HTTPConnection(*server.address, timeout=10)
    try:
        for n in range(5):
            client.request("GET", f"/calculate?expr={n}%2B1")
            response = client.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["result"] == str(n + 1)
            if n == 0:
                first = client.sock
            assert client.sock is first, "http.client had to reconnect: keep-alive broken"
    finally:
        client.close()


def test_ten_pipelined_requests_answered_in_order(server: ServerProcess) -> None:
    raw = b"".join(raw_request("GET", f"/calculate?expr={n}%2A{n}") for n in range(10))
    with server.connect() as sock:
        sock.sendall(raw)  # one send: the server may well read all ten in one recv
        buffer = bytearray()
        results = [as_json(read_response(sock, buffer))["result"] for _ in range(10)]
    assert results == [str(n * n) for n in range(10)]


def test_request_dribbled_one_byte_per_send(server: ServerProcess) -> None:
    body = json.dumps({"expr": "12*12"}).encode()
    raw = raw_request("POST", "/calculate", {"Content-Type": "application/json"}, body)
    with server.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(raw)):
            sock.send(raw[i : i + 1])
            if i % 16 == 0:
                time.sleep(0.001)  # let some bytes travel alone
        response = read_response(sock, bytearray())
    assert response.status == 200 and as_json(response)["result"] == "144"


def test_expect_100_continue(server: ServerProcess) -> None:
    body = b"7*6"
    head = raw_request(
        "POST",
        "/calculate",
        {"Content-Type": "text/plain", "Content-Length": str(len(body)), "Expect": "100-continue"},
    )
    with server.connect() as sock:
        sock.sendall(head)
        buffer = bytearray()
        interim = read_response(sock, buffer)
        assert interim.status == 100
        sock.sendall(body)
        final = read_response(sock, buffer)
    assert final.status == 200 and final.body.strip() == b"42"


def test_http_1_0_closes_after_the_response(server: ServerProcess) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200 ") or data.startswith(b"HTTP/1.0 200 ")
    assert data.endswith(b"ok\n") or b"\r\n\r\nok" in data


def test_http_1_0_keep_alive_when_asked(server: ServerProcess) -> None:
    with server.connect() as sock:
        buffer = bytearray()
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            response = read_response(sock, buffer)
            assert response.status == 200
            assert (response.header("connection") or "").lower() == "keep-alive"


def test_connection_close_is_respected(server: ServerProcess) -> None:
    with server.connect() as sock:
        # A second request after `Connection: close` must be ignored, not answered.
        sock.sendall(
            raw_request("GET", "/healthz", {"Connection": "close"}) + raw_request("GET", "/")
        )
        buffer = bytearray()
        response = read_response(sock, buffer)
        assert response.status == 200 and says_close(response)
        assert bytes(buffer) + recv_until_closed(sock) == b""


def test_half_closed_client_still_gets_its_answers(server: ServerProcess) -> None:
    data = exchange(server, raw_request("GET", "/healthz") * 3)
    assert data.count(b"HTTP/1.1 200 ") == 3


# --- protocol errors: every mode answers exactly what the shared core says ------------------------

ERRORS = {
    "garbage": (b"GARBAGE\r\n\r\n", 400),
    "bad-header": (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n", 400),
    "two-lengths": (raw_request("POST", "/calculate", {"Content-Length": "1, 2"}), 400),
    "bad-version": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "long-target": (raw_request("GET", "/" + "a" * 9000), 414),
    "huge-head": (raw_request("GET", "/", {f"X-{i}": "v" * 200 for i in range(120)}), 431),
    "big-body": (raw_request("POST", "/calculate", {"Content-Length": str(2 << 20)}), 413),
    "gzip-coding": (raw_request("POST", "/calculate", {"Transfer-Encoding": "gzip, chunked"}), 501),
    "chunked-not-last": (raw_request("POST", "/calculate", {"Transfer-Encoding": "gzip"}), 400),
    "eof-mid-head": (b"GET / HTTP/1.1\r\nHost: x\r\n", 400),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_protocol_error_matches_the_core(server: ServerProcess, case: str) -> None:
    raw, status = ERRORS[case]
    expected = core_error_answer(raw)
    assert expected.startswith(f"HTTP/1.1 {status} ".encode())
    answer = exchange(server, raw)  # sends, half-closes, reads to EOF
    assert without_date(answer) == without_date(expected)
    healthz_ok(server)


# --- many clients ---------------------------------------------------------------------------------


def test_200_clients_while_one_idles(server: ServerProcess) -> None:
    """The post's question: does one idle connection hold up everyone else? It must not."""
    with contextlib.ExitStack() as stack:
        idle = stack.enter_context(server.connect(timeout=20))
        clients = [stack.enter_context(server.connect(timeout=20)) for _ in range(200)]
        for n, sock in enumerate(clients):
            sock.sendall(raw_request("GET", f"/calculate?expr={n}%2B0"))
        for n, sock in enumerate(clients):
            assert as_json(read_response(sock, bytearray()))["result"] == str(n)
        # The idle client was never dropped for it; it is served now.
        idle.sendall(raw_request("GET", "/healthz"))
        assert read_response(idle, bytearray()).status == 200



# About 13 ms of CPU per request (thirty exact 3248! summed): enough to make every turn of a
# single-threaded loop long, while the answer stays small and valid.
HEAVY_FORM = ("expr=" + urllib.parse.quote("+".join(["3248!"] * 30))).encode()
BURST = 150
# Seconds for all of them. Measured on this machine: select, selectors and asyncio 0.06-0.11 s;
# asyncio accepting one connection per loop turn (uvloop's own accept path) 3.7 s.
BURST_BOUND = 2.0
GIL_CONVOY = (
    "a thread per connection shares one GIL with the threads computing: every step of a new "
    "client (accept, thread start, recv, send) waits out the 5 ms switch interval behind them, "
    "so the burst takes seconds (4.2-5.2 s measured); asserted: every client is served"
)
THREAD_MODES = {"socketserver", "threaded"}


def test_burst_of_new_clients_is_accepted_while_busy(server: ServerProcess) -> None:
    """New clients must not queue behind a busy server one accept() per turn of its loop.

    uvloop's own accept path (libuv >= 1.45) takes one connection per loop iteration, so while
    4 clients keep the loop busy with 13 ms requests, the last of 150 new clients waited seconds
    just to be accepted. The event-loop modes must take a burst in a few turns; the thread
    modes are bounded by the GIL instead (GIL_CONVOY), and must still serve everyone."""
    stop = threading.Event()

    def keep_busy() -> int:
        answered = 0
        with server.connect(timeout=20) as sock:
            pending = bytearray()
            while not stop.is_set():
                sock.sendall(raw_request("POST", "/calculate", {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Accept": "application/json"}, HEAVY_FORM))
                assert read_response(sock, pending).status == 200
                answered += 1
        return answered

    with ThreadPoolExecutor(4) as pool, contextlib.ExitStack() as stack:
        busy = [pool.submit(keep_busy) for _ in range(4)]
        try:
            time.sleep(0.5)  # the heavy requests are flowing
            started = time.monotonic()
            clients = [stack.enter_context(server.connect(timeout=20)) for _ in range(BURST)]
            for sock in clients:
                sock.sendall(raw_request("GET", "/healthz"))
            for sock in clients:
                assert read_response(sock, bytearray()).status == 200
            elapsed = time.monotonic() - started
        finally:
            stop.set()
        heavy_answered = sum(future.result(timeout=60) for future in busy)
    print(f"\n[{server.mode}] {BURST} new clients answered in {elapsed:.2f} s while busy")
    assert heavy_answered >= 4, "the busy clients were not being served"
    bound = 30.0 if server.mode in THREAD_MODES else BURST_BOUND  # 30 s: stuck, not slow
    assert elapsed < bound, (
        f"{server.mode}: {BURST} new clients took {elapsed:.1f} s to be answered while busy")
    _check_healthy(server)


def _limit_params() -> list[object]:
    return [
        pytest.param(m, marks=pytest.mark.model_limit(SELECT_CEILING)) if m == "select" else m
        for m in MODES
    ]


@pytest.mark.parametrize("mode", _limit_params())
def test_past_1024_descriptors(mode: str, request: pytest.FixtureRequest) -> None:
    """1100 open connections: served everywhere, except where the model documents a ceiling."""
    count = 1100
    refused_by_design = request.node.get_closest_marker("model_limit") is not None
    with running_server(mode, *MAIN_ARGS) as server, contextlib.ExitStack() as stack:
        socks = [stack.enter_context(server.connect(timeout=30)) for _ in range(count)]
        if refused_by_design:
            # The last one is surely past the ceiling; once its 503 is here, so are the others'.
            assert read_response(socks[-1], bytearray()).status == 503
        asked = socks[:-1] if refused_by_design else socks
        for sock in asked:
            sock.setblocking(False)  # a socket timeout would make even MSG_PEEK wait
            try:
                sock.recv(1, socket.MSG_PEEK)  # an unsolicited answer: this one was refused
            except BlockingIOError:
                sock.settimeout(30)
                sock.sendall(raw_request("GET", "/healthz"))
        statuses = []
        for sock in asked:  # all asked at once, then all answers read: a crowd, not a queue
            sock.settimeout(30)
            response = read_response(sock, bytearray())
            statuses.append(response.status)
            if response.status == 503:
                assert says_close(response) and response.body.startswith(b"503 ")
        if refused_by_design:
            served = statuses.count(200)
            assert 900 < served < 1024, statuses
            assert statuses == [200] * served + [503] * (len(statuses) - served)
        else:
            assert statuses == [200] * count
        stack.close()
        healthz_ok(server)  # still serving after the crowd left
        _check_healthy(server)


# --- timeouts -------------------------------------------------------------------------------------


def test_slow_head_gets_408_while_others_are_served(short_server: ServerProcess) -> None:
    with short_server.connect() as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: sl")
        started = time.monotonic()
        healthz_ok(short_server)  # someone else is served meanwhile
        response = read_response(slow, bytearray())
        waited = time.monotonic() - started
        assert response.status == 408 and says_close(response)
        assert_closed(slow)
    assert waited >= SHORT * 0.8, "answered 408 before the header timeout passed"


def test_slow_body_gets_408(short_server: ServerProcess) -> None:
    with short_server.connect() as slow:
        slow.sendall(raw_request("POST", "/calculate", {"Content-Length": "10"}) + b"1+")
        healthz_ok(short_server)
        response = read_response(slow, bytearray())
        assert response.status == 408 and says_close(response)
        assert_closed(slow)


def test_idle_keep_alive_closes_silently(short_server: ServerProcess) -> None:
    with short_server.connect() as sock:
        sock.sendall(raw_request("GET", "/healthz"))
        buffer = bytearray()
        assert read_response(sock, buffer).status == 200
        assert bytes(buffer) + recv_until_closed(sock) == b""  # no 408 for an idle connection


def test_silent_new_connection_closes_silently(short_server: ServerProcess) -> None:
    with short_server.connect() as sock:
        assert recv_until_closed(sock) == b""


def test_reader_that_stalls_is_dropped(short_server: ServerProcess) -> None:
    """A client that asks and never reads is cut off once it stalls for a body timeout."""
    pid = short_server.proc.pid
    healthz_ok(short_server)
    fds_before = open_fds(pid)
    with short_server.connect() as hog:
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            for _ in range(2000):
                hog.send(raw_request("GET", "/"))
        healthz_ok(short_server)  # others are served meanwhile
        # The server drops the connection: its descriptor goes (whatever the kernel may still
        # be trickling out of an orphaned send buffer).
        assert wait_for(lambda: open_fds(pid) <= fds_before), (open_fds(pid), fds_before)
        _reset(hog)
    healthz_ok(short_server)


# --- misbehaving clients --------------------------------------------------------------------------


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER 0), the rudest way to leave."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_disconnects_mid_request_and_mid_response_harm_no_one(server: ServerProcess) -> None:
    pid = server.proc.pid
    healthz_ok(server)
    fds_before = open_fds(pid)
    threads_before = int(proc_status(pid)["Threads"])
    for rude in (False, True):
        leave = _reset if rude else socket.socket.close
        for partial in (
            b"GET / HTTP/1.1\r\nHo",  # mid-head
            raw_request("POST", "/calculate", {"Content-Length": "100"}) + b"1+1",  # mid-body
            raw_request("GET", "/") * 300,  # mid-response: answers pile up unread
        ):
            sock = server.connect()
            sock.sendall(partial)
            time.sleep(0.05)
            leave(sock)
        with server.connect() as sock:  # a client that reads half an answer and goes
            sock.sendall(raw_request("GET", "/"))
            sock.recv(100)
            leave(sock)
        healthz_ok(server)
    # Nothing leaked: descriptors and threads go back to where they were.
    assert wait_for(lambda: open_fds(pid) <= fds_before), (open_fds(pid), fds_before)
    if server.mode in ("threaded", "socketserver"):  # elsewhere threads do not follow clients
        assert wait_for(lambda: int(proc_status(pid)["Threads"]) <= threads_before)
    _check_healthy(server)


def test_unread_pipelined_responses_do_not_grow_memory(server: ServerProcess) -> None:
    """Pipelining requests without reading answers must not buffer every answer in the server."""
    pid = server.proc.pid
    page = get(server, "/")
    rss_before = int(proc_status(pid)["VmRSS"].split()[0])  # KiB
    request = raw_request("GET", "/")
    sent = 0
    with server.connect() as hog:
        hog.setblocking(False)
        progress = time.monotonic()
        # Enough requests that unbounded buffering would cost hundreds of MiB of answers; stop
        # early once the server has not taken a byte for a second (it stopped reading: good).
        while sent < 4 << 20 and time.monotonic() - progress < 1.0:
            try:
                sent += hog.send(request * 256)
                progress = time.monotonic()
            except BlockingIOError:
                time.sleep(0.05)
        healthz_ok(server)
        rss_after = int(proc_status(pid)["VmRSS"].split()[0])
        _reset(hog)
    answers_wanted = sent // len(request) * len(page.body) // 1024  # KiB if all were buffered
    grown = rss_after - rss_before
    assert grown < 64 * 1024, f"RSS grew {grown} KiB for {answers_wanted} KiB of unread answers"
    healthz_ok(server)


# --- real clients: curl ---------------------------------------------------------------------------

needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    assert CURL is not None
    return subprocess.run(
        [CURL, "--silent", "--show-error", "--max-time", "20", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


@needs_curl
def test_curl_get_head_and_form(server: ServerProcess) -> None:
    page = curl(server.url + "/")
    assert page.returncode == 0 and "<form" in page.stdout
    head = curl("--head", server.url + "/")
    assert head.returncode == 0 and head.stdout.startswith("HTTP/1.1 200")
    form = curl("--data-urlencode", "expr=2*21", server.url + "/calculate")
    assert form.returncode == 0 and json.loads(form.stdout)["result"] == "42"


@needs_curl
def test_curl_reuses_the_connection(server: ServerProcess) -> None:
    result = curl("--verbose", server.url + "/healthz", server.url + "/healthz")
    assert result.returncode == 0 and result.stdout.count("ok") == 2
    assert re.search(r"Re-using existing connection|Reusing existing", result.stderr), result.stderr


@needs_curl
def test_curl_http_1_0(server: ServerProcess) -> None:
    result = curl("--http1.0", "--include", server.url + "/healthz")
    assert result.returncode == 0 and " 200 " in result.stdout.splitlines()[0]


# --- stopping -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("mode", MODES)
def test_stops_cleanly_with_clients_connected(mode: str, sig: int) -> None:
    with running_server(mode, *MAIN_ARGS) as server:
        idle = server.connect()
        kept = server.connect()
        kept.sendall(raw_request("GET", "/healthz"))
        assert read_response(kept, bytearray()).status == 200
        assert server.stop(sig) == 0, server.stderr_text()[-3000:]
        for sock in (idle, kept):
            assert recv_until_closed(sock) == b""  # closed, and no stray bytes on the way out
            sock.close()
        assert "Traceback" not in server.stderr_text()


def test_socketserver_fork_serves_and_stops() -> None:
    """`--fork`: a process per connection, same behaviour on the wire."""
    with running_server("socketserver", "--fork", *MAIN_ARGS) as server:
        with server.connect() as sock:
            sock.sendall(b"".join(raw_request("GET", f"/calculate?expr={n}") for n in range(3)))
            buffer = bytearray()
            results = [as_json(read_response(sock, buffer))["result"] for _ in range(3)]
            assert results == ["0", "1", "2"]
        idle = server.connect()
        healthz_ok(server)
        with ThreadPoolExecutor(20) as pool:  # twenty children at once
            for future in [pool.submit(healthz_ok, server) for _ in range(20)]:
                future.result(timeout=30)
        assert server.stop() == 0, server.stderr_text()[-3000:]
        assert recv_until_closed(idle) == b""
        idle.close()
        assert "Traceback" not in server.stderr_text()
