"""The production server (`python -m app`, app/server.py) over real loopback sockets.

Two ways in: in-process through `serve(config, shutdown=..., ready=...)` (fast, and lets a test
inject routes whose handler raises), and as a `python -m app` subprocess through
tests/support.py (the real CLI, environment, signals and exit codes). Timeouts are configured
small (0.3-0.5 s) and asserted with generous upper bounds: other suites share the two cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.config import Config
from app.listen import bind_listeners, format_address
from app.protocol import Request, Response
from app.routes import STATIC_DIR, Deferred, Routes, load_assets
from app.server import serve
from tests.support import (
    RawResponse,
    ServerProcess,
    exchange,
    read_response,
    recv_until_closed,
    running_server,
)

# 2*(3+4)/5 = 14/5: exact, and a non-integer so the fraction shows.
EXPR = "2*(3+4)/5"
FORM_EXPR = "expr=2*(3%2B4)/5"
QUERY_EXPR = "expr=2*%283%2B4%29/5"
SLACK = 5.0  # seconds of scheduling slack allowed on a loaded 2-core machine


# -- in-process server -----------------------------------------------------------------------------


@dataclass
class InProcess:
    host: str
    port: int
    shutdown: asyncio.Event
    task: asyncio.Task[None]

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port)


@contextlib.asynccontextmanager
async def in_process(routes: Routes | None = None, **changes: Any) -> AsyncIterator[InProcess]:
    config = Config(host="127.0.0.1", port=0, **changes)
    loop = asyncio.get_running_loop()
    bound: asyncio.Future[tuple[str, int]] = loop.create_future()
    shutdown = asyncio.Event()
    task = asyncio.create_task(
        serve(config, routes=routes, shutdown=shutdown,
              ready=lambda host, port: bound.set_result((host, port)))
    )
    started: list[asyncio.Future[Any]] = [bound, task]
    done, _ = await asyncio.wait(started, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # startup failed: raise it here
    host, port = bound.result()
    server = InProcess(host, port, shutdown, task)
    try:
        yield server
    finally:
        shutdown.set()
        await asyncio.wait_for(task, 15)


async def read_async(reader: asyncio.StreamReader, *, head_only: bool = False) -> RawResponse:
    """One Content-Length-framed response (1xx returned as is), like support.read_response."""
    head = (await reader.readuntil(b"\r\n\r\n"))[:-4].decode("latin-1")
    status_line, *lines = head.split("\r\n")
    _version, status, reason = [*status_line.split(" ", 2), ""][:3]
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    response = RawResponse(int(status), reason, headers, b"")
    if head_only or 100 <= response.status < 200 or response.status in (204, 304):
        return response
    response.body = await reader.readexactly(int(response.header("content-length") or 0))
    return response


async def exchange_async(server: InProcess, raw: bytes) -> RawResponse:
    reader, writer = await server.connect()
    try:
        writer.write(raw)
        return await asyncio.wait_for(read_async(reader, head_only=raw.startswith(b"HEAD")), 10)
    finally:
        writer.close()


async def wait_closed_by_server(reader: asyncio.StreamReader, within: float) -> tuple[bytes, float]:
    """Read until the server closes; returns what came and how long it took."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), within)
    return data, time.monotonic() - started


def request(
    method: str, target: str, body: bytes = b"", *headers: str, close: bool = False
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: test", *headers]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def calculate(expr: str, *headers: str) -> bytes:
    body = "expr=" + expr.replace("+", "%2B")
    return request("POST", "/calculate", body.encode(),
                   "Content-Type: application/x-www-form-urlencoded", *headers)


# -- the protocol table (DESIGN.md), once per row --------------------------------------------------


@dataclass(frozen=True)
class Row:
    name: str
    raw: bytes
    status: int
    content_type: str | None = None  # prefix of the Content-Type
    contains: bytes | None = None


ROWS = [
    Row("page", request("GET", "/"), 200, "text/html", b"<form"),
    Row("page-head", request("HEAD", "/"), 200, "text/html"),
    Row("static", request("GET", "/static/app.js"), 200, "text/javascript"),
    Row("form-html", request("POST", "/calculate", FORM_EXPR.encode(),
                             "Content-Type: application/x-www-form-urlencoded",
                             "Accept: text/html,application/xhtml+xml,*/*;q=0.8"),
        200, "text/html", b"2.8"),
    Row("form-json", request("POST", "/calculate", FORM_EXPR.encode(),
                             "Content-Type: application/x-www-form-urlencoded",
                             "Accept: application/json"), 200, "application/json", b'"2.8"'),
    Row("json", request("POST", "/calculate", json.dumps({"expr": EXPR}).encode(),
                        "Content-Type: application/json"), 200, "application/json", b'"2.8"'),
    Row("text", request("POST", "/calculate", EXPR.encode(), "Content-Type: text/plain"),
        200, "text/plain", b"2.8"),
    Row("get-json", request("GET", f"/calculate?{QUERY_EXPR}"), 200, "application/json",
        b'"2.8"'),
    Row("get-text", request("GET", f"/calculate?{QUERY_EXPR}", b"", "Accept: text/plain"),
        200, "text/plain", b"2.8"),
    Row("healthz", request("GET", "/healthz"), 200, "text/plain", b"ok"),
    Row("not-found", request("GET", "/nope"), 404),
    Row("method", request("DELETE", "/calculate"), 405),
    Row("unevaluable", request("POST", "/calculate", b'{"expr": "1/0"}',
                               "Content-Type: application/json"), 422, "application/json"),
    Row("unevaluable-text", request("POST", "/calculate", b"1/0", "Content-Type: text/plain"),
        422, "text/plain", b"division"),
    Row("no-expr", request("POST", "/calculate", b"{}", "Content-Type: application/json"), 400),
    Row("bad-json", request("POST", "/calculate", b"{", "Content-Type: application/json"), 400),
    Row("media-type", request("POST", "/calculate", b"<x/>", "Content-Type: application/xml"),
        415),
]


def check_row(row: Row, response: RawResponse) -> None:
    assert response.status == row.status, (row.name, response.status, response.body[:300])
    if row.content_type is not None:
        assert (response.header("content-type") or "").startswith(row.content_type), row.name
    if row.contains is not None:
        assert row.contains in response.body, (row.name, response.body[:300])
    assert response.header("date", ) is not None
    if row.status == 405:
        assert response.header("allow"), "405 must say what is allowed"
    if row.status == 422 and row.content_type == "application/json":
        error = json.loads(response.body)["error"]
        assert error["kind"] == "division_by_zero" and isinstance(error["position"], int)


@pytest.fixture(scope="module")
def app_server() -> Iterator[ServerProcess]:
    with running_server("asyncio") as server:
        yield server
        assert server.proc.poll() is None, server.stderr_text()
    assert "Traceback" not in server.stderr_text()


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_protocol_table_subprocess(app_server: ServerProcess, row: Row) -> None:
    with app_server.connect() as sock:
        sock.sendall(row.raw)
        response = read_response(sock, bytearray(), head_only=row.raw.startswith(b"HEAD"))
    check_row(row, response)


async def test_protocol_table_in_process() -> None:
    async with in_process() as server:
        for row in ROWS:
            check_row(row, await exchange_async(server, row.raw))


def test_head_has_the_get_length_and_no_body(app_server: ServerProcess) -> None:
    with app_server.connect() as sock:
        buffer = bytearray()
        sock.sendall(request("GET", "/"))
        get = read_response(sock, buffer)
        sock.sendall(request("HEAD", "/"))
        head = read_response(sock, buffer, head_only=True)
        sock.sendall(request("GET", "/healthz"))
        after = read_response(sock, buffer)  # a HEAD body would show up here as garbage
    assert head.header("content-length") == str(len(get.body))
    assert after.status == 200 and after.body.startswith(b"ok")


def test_static_etag_and_304(app_server: ServerProcess) -> None:
    with app_server.connect() as sock:
        buffer = bytearray()
        sock.sendall(request("GET", "/static/app.js"))
        first = read_response(sock, buffer)
        etag = first.header("etag")
        assert etag and first.body == (STATIC_DIR / "app.js").read_bytes()
        sock.sendall(request("GET", "/static/app.js", b"", f"If-None-Match: {etag}"))
        again = read_response(sock, buffer)
    assert again.status == 304 and again.body == b""


# -- connections: keep-alive, pipelining, 100-continue, close --------------------------------------


async def test_keep_alive_reuses_one_connection() -> None:
    async with in_process() as server:
        reader, writer = await server.connect()
        for i in range(20):
            writer.write(calculate(f"{i}+1", "Accept: application/json"))
            response = await read_async(reader)
            assert response.status == 200
            assert json.loads(response.body)["result"] == str(i + 1)
            assert response.header("connection") != "close"
        writer.close()


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with in_process() as server:
        reader, writer = await server.connect()
        writer.write(b"".join(calculate(f"{i}*2", "Accept: application/json")
                              for i in range(200)))
        for i in range(200):
            response = await asyncio.wait_for(read_async(reader), 10)
            assert json.loads(response.body)["result"] == str(i * 2)
        writer.close()


async def test_concurrent_keep_alive_clients_each_get_their_own_answers() -> None:
    # In one process the clients' requests reach the server in the same loop iterations, so
    # most answers take the corked path (written at the end of the iteration); some clients
    # hang up without reading, so corked answers also go to connections already gone.
    async with in_process() as server:

        async def client(n: int) -> list[str]:
            reader, writer = await server.connect()
            results = []
            for i in range(10):
                writer.write(calculate(f"{n}*1000+{i}", "Accept: application/json"))
                response = await asyncio.wait_for(read_async(reader), 10)
                assert response.status == 200
                results.append(json.loads(response.body)["result"])
            writer.close()
            return results

        async def rude(n: int) -> None:
            _, writer = await server.connect()
            writer.write(calculate(f"{n}+1"))
            await writer.drain()
            writer.transport.abort()

        clients = [client(n) for n in range(40)]
        outcomes = await asyncio.gather(*clients, *(rude(n) for n in range(20)))
        for n, results in enumerate(outcomes[:40]):
            assert results == [str(n * 1000 + i) for i in range(10)]
        assert (await exchange_async(server, calculate("6*7"))).body.count(b"42") >= 1


def test_pipelining_one_byte_at_a_time(app_server: ServerProcess) -> None:
    raw = calculate("1+1") + request("GET", "/healthz", close=True)
    with app_server.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in raw:
            sock.send(bytes([byte]))
        reply = recv_until_closed(sock)
    assert reply.count(b"HTTP/1.1 200 OK") == 2
    assert reply.rstrip().endswith(b"ok")


def test_connection_close_and_http_1_0(app_server: ServerProcess) -> None:
    reply = exchange(app_server, request("GET", "/healthz", close=True) + request("GET", "/"))
    assert reply.count(b"HTTP/1.1 ") == 1 and b"Connection: close" in reply
    with app_server.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert recv_until_closed(sock).startswith(b"HTTP/1.1 200")
    with app_server.connect() as sock:
        buffer = bytearray()
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            assert read_response(sock, buffer).header("connection") == "keep-alive"


async def test_expect_100_continue() -> None:
    async with in_process() as server:
        reader, writer = await server.connect()
        body = FORM_EXPR.encode()
        writer.write(request("POST", "/calculate", b"", "Expect: 100-continue",
                             "Accept: application/json",
                             "Content-Type: application/x-www-form-urlencoded")
                     .replace(b"Content-Length: 0", f"Content-Length: {len(body)}".encode()))
        interim = await asyncio.wait_for(read_async(reader), 10)
        assert interim.status == 100
        writer.write(body)
        final = await asyncio.wait_for(read_async(reader), 10)
        assert final.status == 200 and json.loads(final.body)["result"] == "2.8"
        writer.close()


async def test_chunked_request_body() -> None:
    async with in_process() as server:
        raw = (b"POST /calculate HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n4\r\n2*(3\r\n5\r\n+4)/5\r\n0\r\n\r\n")
        response = await exchange_async(server, raw)
        assert response.status == 200 and b"2.8" in response.body


# -- timeouts --------------------------------------------------------------------------------------


async def test_silent_connection_is_closed_at_the_header_timeout() -> None:
    async with in_process(header_timeout=0.5, keepalive_timeout=30.0) as server:
        reader, writer = await server.connect()
        data, took = await wait_closed_by_server(reader, 0.5 + SLACK)
        assert data == b"" and took >= 0.4
        writer.close()


async def test_slowloris_gets_408_at_the_header_timeout() -> None:
    """Bytes keep trickling in, but the whole head must arrive within the header timeout."""
    async with in_process(header_timeout=0.6, keepalive_timeout=30.0) as server:
        reader, writer = await server.connect()
        started = time.monotonic()

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                writer.write(b"GET / HTTP/1.1\r\n")
                for i in range(100):
                    await asyncio.sleep(0.1)
                    writer.write(f"X-Slow-{i}: y\r\n".encode())

        sender = asyncio.create_task(trickle())
        data, _ = await wait_closed_by_server(reader, 0.6 + SLACK)
        sender.cancel()
        assert data.startswith(b"HTTP/1.1 408 "), data
        assert b"Connection: close" in data
        assert 0.5 <= time.monotonic() - started < 0.6 + SLACK
        writer.close()


async def test_body_timeout_gets_408() -> None:
    async with in_process(body_timeout=0.5, header_timeout=30.0) as server:
        reader, writer = await server.connect()
        writer.write(b"POST /calculate HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: 10\r\n\r\n1+")
        data, took = await wait_closed_by_server(reader, 0.5 + SLACK)
        assert data.startswith(b"HTTP/1.1 408 ") and took >= 0.4
        writer.close()


async def test_idle_keep_alive_connection_is_closed() -> None:
    async with in_process(keepalive_timeout=0.4, header_timeout=30.0) as server:
        reader, writer = await server.connect()
        writer.write(request("GET", "/healthz"))
        assert (await read_async(reader)).status == 200
        data, took = await wait_closed_by_server(reader, 0.4 + SLACK)
        assert data == b"" and took >= 0.3  # quietly: no 408 for an idle connection
        writer.close()


async def test_activity_keeps_a_connection_alive_past_the_keepalive_timeout() -> None:
    async with in_process(keepalive_timeout=0.4) as server:
        reader, writer = await server.connect()
        for _ in range(6):  # 6 x 0.2 s = 1.2 s > 0.4 s, but never idle for 0.4 s
            writer.write(request("GET", "/healthz"))
            assert (await read_async(reader)).status == 200
            await asyncio.sleep(0.2)
        writer.close()


# -- limits and flow control -----------------------------------------------------------------------


async def test_max_connections_answers_503_and_closes() -> None:
    async with in_process(max_connections=2) as server:
        held = [await server.connect() for _ in range(2)]
        for reader, writer in held:  # make sure both are accepted and counted
            writer.write(request("GET", "/healthz"))
            assert (await read_async(reader)).status == 200
        reader, writer = await server.connect()
        writer.write(request("GET", "/healthz"))
        data = await asyncio.wait_for(reader.read(), 5)
        assert data.startswith(b"HTTP/1.1 503 ") and b"Connection: close" in data
        writer.close()
        held[0][1].close()
        await held[0][1].wait_closed()
        # A slot is free again: a new client is served (retry: the close is asynchronous).
        for _ in range(50):
            reader, writer = await server.connect()
            writer.write(request("GET", "/healthz"))
            response = await read_async(reader)
            writer.close()
            if response.status == 200:
                break
            await asyncio.sleep(0.05)
        assert response.status == 200


def test_pipelining_client_that_never_reads_is_throttled(app_server: ServerProcess) -> None:
    """Send requests without reading: the server must stop reading too, so our send blocks,
    long before the hundreds of MB we offer; meanwhile everyone else is served."""
    one = request("GET", "/")  # a page per request: output outgrows input quickly
    batch = one * 256
    offered = 200 * 1024 * 1024
    sent = 0
    with app_server.connect() as hog:
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        hog.settimeout(2.0)
        with contextlib.suppress(TimeoutError):
            while sent < offered:
                sent += hog.send(batch)
        assert sent < 64 * 1024 * 1024, f"server kept reading: {sent} bytes accepted"
        rss = _rss_kib(app_server.proc.pid)
        assert rss < 200 * 1024, f"server RSS {rss} KiB while throttling"
        with app_server.connect() as other:
            other.sendall(request("GET", "/healthz"))
            assert read_response(other, bytearray()).status == 200


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_client_that_never_reads_is_dropped_after_the_body_timeout() -> None:
    async with in_process(body_timeout=0.5, keepalive_timeout=30.0) as server:
        sock = socket.create_connection((server.host, server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.setblocking(False)
        batch = request("GET", "/") * 64
        loop = asyncio.get_running_loop()
        dropped = False
        started = time.monotonic()
        while time.monotonic() - started < 0.5 + SLACK:
            try:
                await asyncio.wait_for(loop.sock_sendall(sock, batch), 0.2)
            except TimeoutError:
                continue
            except OSError:
                dropped = True
                break
        sock.close()
        assert dropped, "a client that never reads must be disconnected"


# -- failures: handler exceptions, path traversal --------------------------------------------------


class ExplodingRoutes(Routes):
    """The real routes, plus one path whose handler raises (a stand-in for a bug)."""

    def handle(self, request: Request, budget: int | None = None) -> Response | Deferred:
        if request.path == "/boom":
            raise RuntimeError("handler bug")
        if request.path == "/split":  # a response that cannot be serialised (header injection)
            return Response(200, [("X-Echo", "a\r\nSet-Cookie: b")], b"")
        return super().handle(request, budget)


async def test_handler_exception_is_a_500_and_the_connection_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with in_process(routes=ExplodingRoutes(load_assets())) as server:
        reader, writer = await server.connect()
        writer.write(request("GET", "/boom"))
        failed = await read_async(reader)
        assert failed.status == 500
        assert b"handler bug" not in failed.body and b"Traceback" not in failed.body
        writer.write(request("GET", "/healthz"))  # same connection
        assert (await read_async(reader)).status == 200
        writer.write(request("GET", "/split"))
        split = await read_async(reader)
        assert split.status == 500 and split.header("set-cookie") is None
        writer.write(request("GET", "/healthz"))
        assert (await read_async(reader)).status == 200
        writer.close()
        other = await exchange_async(server, request("GET", "/healthz"))  # same server
        assert other.status == 200
    assert any(r.exc_info and "handler bug" in str(r.exc_info[1]) for r in caplog.records)


TRAVERSALS = [
    "/static/../pyproject.toml",
    "/static/%2e%2e/pyproject.toml",
    "/static/%2E%2E%2Fpyproject.toml",
    "/static/..%2fpyproject.toml",
    "/static/..%5cpyproject.toml",
    "/static/..\\pyproject.toml",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/app.js%00.txt",
    "/static/app.js%00",
    "/static/./../app/config.py",
    "/static/%252e%252e/pyproject.toml",
    "/../pyproject.toml",
    "/static/",
    "/static",
    "//etc/passwd",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_path_traversal_never_serves_outside_static(app_server: ServerProcess, target: str) -> None:
    raw = f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode("latin-1")
    reply = exchange(app_server, raw)
    status = int(reply.split(b" ", 2)[1])
    assert status in (400, 404), (target, reply[:200])
    for secret in (b"[project]", b"root:x:0:0", b"class Config"):
        assert secret not in reply


# -- shutdown --------------------------------------------------------------------------------------


def test_sigterm_lets_an_in_flight_request_finish_then_exits_0() -> None:
    with running_server("asyncio", "--graceful-timeout", "10") as server:
        busy = server.connect()
        idle = server.connect()
        idle.sendall(request("GET", "/healthz"))
        assert read_response(idle, bytearray()).status == 200
        body = FORM_EXPR.encode()
        busy.sendall(request("POST", "/calculate", body, "Accept: application/json",
                             "Content-Type: application/x-www-form-urlencoded")[:-3])
        time.sleep(0.2)  # the head is in; the last bytes of the body are withheld
        server.proc.send_signal(signal.SIGTERM)
        assert recv_until_closed(idle) == b""  # the idle connection is closed at once
        time.sleep(0.3)
        with pytest.raises(OSError):  # and no new connections are accepted
            server.connect(timeout=2).sendall(request("GET", "/healthz"))
        busy.sendall(body[-3:])
        response = read_response(busy, bytearray())
        assert response.status == 200 and json.loads(response.body)["result"] == "2.8"
        assert response.header("connection") == "close"
        assert recv_until_closed(busy) == b""
        assert server.proc.wait(10) == 0
        busy.close()
        idle.close()
        assert "Traceback" not in server.stderr_text()


def test_graceful_timeout_bounds_the_wait() -> None:
    with running_server("asyncio", "--graceful-timeout", "0.5", "--body-timeout", "60") as server:
        stuck = server.connect()
        stuck.sendall(b"POST /calculate HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n1")
        time.sleep(0.2)
        started = time.monotonic()
        assert server.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 0.5 + SLACK
        stuck.close()


def test_second_sigint_exits_at_once() -> None:
    with running_server("asyncio", "--graceful-timeout", "60", "--body-timeout", "60") as server:
        stuck = server.connect()
        stuck.sendall(b"POST /calculate HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n1")
        time.sleep(0.2)
        server.proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert server.proc.poll() is None  # still waiting for the in-flight request
        started = time.monotonic()
        code = server.stop(signal.SIGINT)
        assert time.monotonic() - started < SLACK
        assert code != 0  # forced, not graceful
        stuck.close()


async def test_in_process_shutdown_closes_idle_and_finishes_busy() -> None:
    async with in_process(graceful_timeout=5.0) as server:
        idle_reader, idle_writer = await server.connect()
        busy_reader, busy_writer = await server.connect()
        busy_writer.write(b"POST /calculate HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
                          b"Content-Length: 3\r\n\r\n1+")
        await asyncio.sleep(0.1)
        server.shutdown.set()
        assert await asyncio.wait_for(idle_reader.read(), 5) == b""
        busy_writer.write(b"1")
        response = await asyncio.wait_for(read_async(busy_reader), 5)
        assert response.status == 200 and response.header("connection") == "close"
        await asyncio.wait_for(server.task, 5)
        idle_writer.close()
        busy_writer.close()


# -- the command line: options, environment, loops, listening line ---------------------------------


def test_environment_configures_the_server() -> None:
    env = {"CALCSERVE_KEEPALIVE_TIMEOUT": "0.3", "CALCSERVE_ACCESS_LOG": "1"}
    with running_server("asyncio", env=env) as server, server.connect() as sock:
        sock.sendall(request("GET", "/healthz", b"", "User-Agent: test"))
        assert read_response(sock, bytearray()).status == 200
        started = time.monotonic()
        assert recv_until_closed(sock) == b""
        assert time.monotonic() - started < 0.3 + SLACK
        deadline = time.monotonic() + 5
        while '"GET /healthz HTTP/1.1" 200 ' not in server.stderr_text():
            assert time.monotonic() < deadline, server.stderr_text()
            time.sleep(0.05)


def test_bad_environment_value_is_a_usage_error() -> None:
    with (
        pytest.raises(AssertionError, match="CALCSERVE_HEADER_TIMEOUT"),
        running_server("asyncio", env={"CALCSERVE_HEADER_TIMEOUT": "soon"}),
    ):
        pass


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_each_event_loop_serves(loop: str) -> None:
    with running_server("asyncio", "--loop", loop, "--log-level", "debug") as server:
        reply = exchange(server, calculate("6*7", "Accept: application/json", "Connection: close"))
        assert b'"42"' in reply
        assert f"event loop: {loop}" in server.stderr_text()
        assert server.stop() == 0


def test_ipv6_listening_line_has_brackets() -> None:
    if not socket.has_ipv6:
        pytest.skip("reason: this machine has no IPv6 support")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("reason: ::1 cannot be bound on this machine")
    with running_server("asyncio", "--host", "::1") as server:
        assert server.host.startswith("[") and server.url.startswith("http://[::1]:")
    assert format_address("::1", 80) == "[::1]:80" and format_address("1.2.3.4", 80) == "1.2.3.4:80"


def _low_fd_limit() -> None:
    # Runs in the child before the server starts (the server may raise only the soft limit,
    # never the hard one), so a burst of clients exhausts descriptors at accept().
    resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_out_of_descriptors_does_not_spin_or_kill_the_server(loop: str) -> None:
    with running_server(
        "asyncio", "--loop", loop, "--keepalive-timeout", "30", preexec_fn=_low_fd_limit
    ) as server:
        clients = []
        for _ in range(80):  # more than the 48 descriptors: the rest wait in the backlog
            clients.append(server.connect())
        time.sleep(0.5)
        cpu_before = _cpu_seconds(server.proc.pid)
        time.sleep(2.0)
        cpu = _cpu_seconds(server.proc.pid) - cpu_before
        assert cpu < 0.5, f"server burned {cpu:.2f} s of CPU in 2 s while out of descriptors"
        for sock in clients:
            sock.close()
        # Descriptors are free again: a new client is served (accept retries after a backoff).
        # Until the server has closed its side of those sockets it is still out of descriptors,
        # so retry for a while.
        deadline = time.monotonic() + 10
        reply = b""
        while not reply.startswith(b"HTTP/1.1 200 ") and time.monotonic() < deadline:
            with server.connect() as sock:
                sock.settimeout(5)
                sock.sendall(request("GET", "/healthz", close=True))
                reply = recv_until_closed(sock)
            if not reply:
                time.sleep(0.2)
        assert reply.startswith(b"HTTP/1.1 200 "), reply
        assert server.proc.poll() is None
        assert server.stop() == 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_port_in_use_is_one_clear_line_and_exit_1() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "app", "--port", str(port)], capture_output=True, text=True,
            timeout=30, cwd=Path(__file__).resolve().parent.parent,
        )
    assert done.returncode == 1, done
    assert f"cannot listen on 127.0.0.1 port {port}: [Errno 98]" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_bind_listeners_puts_every_address_on_one_port() -> None:
    # "" is every interface: 0.0.0.0, and :: where the host has IPv6 (IPv6-only, so the two
    # do not collide). Bound, never connected to from outside loopback.
    passive = socket.getaddrinfo(None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets = bind_listeners("", 0, 8)
    try:
        assert len(sockets) == len({(info[0], info[4][0]) for info in passive}) >= 1
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(ports) == 1 and ports.pop() > 0
        assert {sock.family for sock in sockets} == {info[0] for info in passive}
        for sock in sockets:
            if sock.family == socket.AF_INET6:
                assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    finally:
        for sock in sockets:
            sock.close()
