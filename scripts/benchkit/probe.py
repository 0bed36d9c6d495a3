"""A tiny blocking HTTP/1.1 client: the check before a server is measured, and the latency of
fresh clients (connect, request, answer, close) while a scenario loads the server.

It reads what our servers and the peers send (a head, then Content-Length bytes) and nothing
else: it is an instrument, not a general client.
"""

from __future__ import annotations

import socket
import statistics
import time
from typing import Any

from benchkit import HOST
from benchkit.servers import Server

STALL_MS = 20.0  # median ms of sequential requests above which a server is flagged as stalling


def http_request(sock: socket.socket, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    sock.sendall(raw)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before a response head")
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed mid-body")
        rest += data
    return status, headers, rest[:length]


def post_form(body: str) -> bytes:
    data = body.encode()
    return (
        f"POST /calculate HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data


GET_PAGE = f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
GET_HEALTH = f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


def verify(server: Server, corpus: list[str]) -> dict[str, Any]:
    """Check the server answers the scenarios' requests with 200 before measuring it."""
    report: dict[str, Any] = {"ok": True, "problems": []}
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        timings: list[float] = []
        for body in corpus:
            started = time.perf_counter()
            status, headers, payload = http_request(sock, post_form(body))
            timings.append((time.perf_counter() - started) * 1000)
            if status != 200:
                report["ok"] = False
                report["problems"].append(f"POST {body!r}: {status} {payload[:120]!r}")
            report.setdefault("post_sample", payload[:200].decode("utf-8", "replace"))
            report.setdefault("post_type", headers.get("content-type", ""))
        # One request at a time on one connection should take well under a millisecond; ~40 ms
        # each is Nagle's algorithm meeting a delayed ACK (a server without TCP_NODELAY that
        # writes a response in two pieces), which would make every figure meaningless.
        report["sequential_ms"] = round(statistics.median(timings), 3) if timings else None
        if timings and statistics.median(timings) > STALL_MS:
            report["ok"] = False
            report["problems"].append(
                f"sequential requests take {statistics.median(timings):.1f} ms each "
                "(a Nagle/delayed-ACK stall? check TCP_NODELAY)"
            )
        status, headers, payload = http_request(sock, GET_PAGE)
        report["get_status"] = status
        report["get_type"] = headers.get("content-type", "")
        report["get_bytes"] = len(payload)
        if status != 200:
            report["ok"] = False
            report["problems"].append(f"GET /: {status}")
    return report


def fresh_latencies(port: int, samples: int, timeout: float = 5.0) -> tuple[list[float], int]:
    """Connect, `GET /healthz`, read the answer, close; `samples` times -> (ms list, failures)."""
    latencies: list[float] = []
    failures = 0
    for _ in range(samples):
        started = time.perf_counter()
        try:
            with socket.create_connection((HOST, port), timeout=timeout) as sock:
                status, _, _ = http_request(sock, GET_HEALTH)
        except OSError:
            failures += 1
            continue
        if status != 200:
            failures += 1
            continue
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, failures
