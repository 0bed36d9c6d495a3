"""Calculator abuse over HTTP, in every mode: expensive or enormous expressions are answered
within their bounds (200 for what fits, 422 for what the calculator refuses, 413/414 for what the
protocol refuses) while a well-behaved client on another connection keeps being served.

The single-threaded modes (asyncio, select, selectors) evaluate on their one loop, so this is
where a calculator without a work budget would stall every other client.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.hostile_corpus import PROBE, read_final
from tests.support import MODES, ServerProcess, running_server


@pytest.fixture(scope="module", params=MODES)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with running_server(request.param) as proc:
        yield proc
        assert proc.proc.poll() is None, f"{proc.mode} died: {proc.stderr_text()[-2000:]}"


def text_post(expr: bytes) -> bytes:
    return (b"POST /calculate HTTP/1.1\r\nHost: calc.test\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\n\r\n" % len(expr)) + expr


def json_post(expr: str) -> bytes:
    body = json.dumps({"expr": expr}).encode()
    return (b"POST /calculate HTTP/1.1\r\nHost: calc.test\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


def query_get(expr: str) -> bytes:
    target = "/calculate?expr=" + urllib.parse.quote(expr, safe="")
    return f"GET {target} HTTP/1.1\r\nHost: calc.test\r\n\r\n".encode()


TEN_K = "1+" * 4999 + "11"  # exactly MAX_EXPRESSION_LENGTH (10,000) characters
assert len(TEN_K) == 10_000

ABUSE: dict[str, tuple[bytes, set[int]]] = {
    "giant power 2^10^10": (text_post(b"2^10^10"), {200, 422}),
    "tower 10^10^10^10": (text_post(b"10^10^10^10"), {422}),
    "tower 9^9^9^9": (text_post(b"9^9^9^9"), {422}),
    "factorial 1000000!": (text_post(b"1000000!"), {200, 422}),
    "factorial tower 3!!!!": (text_post(b"3!!!!"), {422}),
    "factorial of a tower (10^10)!": (text_post(b"(10^10)!"), {200, 422}),
    "exp tower": (text_post(b"exp(exp(exp(exp(10))))"), {200, 422}),
    "sin of a huge argument": (text_post(b"sin(10^1000000)"), {200, 422}),
    "sqrt(2)^(10^6)": (text_post(b"sqrt(2)^(10^6)"), {200, 422}),
    "deep parens x300": (text_post(b"(" * 300 + b"1" + b")" * 300), {422}),
    "deep sqrt x300": (text_post(b"sqrt(" * 300 + b"2" + b")" * 300), {422}),
    "deep unary minus x5000": (text_post(b"-" * 5000 + b"1"), {200, 422}),
    "10,000-char sum": (text_post(TEN_K.encode()), {200}),
    "10,001-char sum": (text_post(TEN_K.encode() + b"1"), {413, 422}),
    "10,000 chars of 9": (text_post(b"9" * 10_000), {200, 422}),
    "1e999999999999 * 1e999999999999": (text_post(b"1e999999999999*1e999999999999"), {200, 422}),
    "(1e999999999999)^10000": (text_post(b"(1e999999999999)^10000"), {422}),
    "a megabyte of (": (text_post(b"(" * 1_000_000), {413, 422}),
    "two megabytes of (": (text_post(b"(" * 2_000_000), {413}),
    "json megabyte of (": (json_post("(" * 1_000_000), {413, 422}),
    "query with 9,000 chars": (query_get("1+" * 4500), {414}),
    "query deep nesting": (query_get("(" * 2000 + "1" + ")" * 2000), {414, 422}),
}


def send_and_time(server: ServerProcess, raw: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    with server.connect(timeout=30) as sock:
        # Refused early (413 before the whole body): the answer is still readable.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        status = read_final(sock, bytearray()).status
    return status, time.perf_counter() - started


def test_calculator_abuse_is_bounded_and_others_are_served(server: ServerProcess) -> None:
    stop = threading.Event()
    results: dict[str, tuple[int, float]] = {}
    latencies: list[float] = []
    failures: list[str] = []

    def well_behaved() -> None:
        with server.connect(timeout=30) as sock:
            buffer = bytearray()
            while not stop.is_set():
                started = time.perf_counter()
                sock.sendall(PROBE)
                status = read_final(sock, buffer).status
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    failures.append(f"healthz {status}")
                time.sleep(0.01)

    bystander = threading.Thread(target=well_behaved, daemon=True)
    bystander.start()
    try:
        with ThreadPoolExecutor(4) as pool:  # four abusers at once
            for _ in range(3):  # three rounds, so the bystander is measured throughout
                futures = {name: pool.submit(send_and_time, server, raw)
                           for name, (raw, _) in ABUSE.items()}
                results = {name: future.result() for name, future in futures.items()}
    finally:
        stop.set()
        bystander.join(30)
    slowest = max(results.items(), key=lambda item: item[1][1])
    print(f"\n[{server.mode}] calculator abuse: {len(results)} requests, slowest "
          f"{slowest[0]!r} {slowest[1][1] * 1000:.0f} ms; bystander {len(latencies)} requests, "
          f"max {max(latencies) * 1000:.0f} ms")
    wrong = {name: status for name, (status, _) in results.items()
             if status not in ABUSE[name][1]}
    assert not wrong, f"unexpected statuses: {wrong}"
    assert not failures, failures
    assert latencies, "the well-behaved client was never served"
    assert max(seconds for _, seconds in results.values()) < 10
    assert max(latencies) < 5, f"a bystander waited {max(latencies):.1f}s"
