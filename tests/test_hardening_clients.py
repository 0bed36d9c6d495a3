"""Abusive and faulty clients against every mode: slow, silent, endless, flooding, vanishing.

Two servers per mode, started once for the module:
- `strict`: 2 s timeouts, for the tests that wait for a timeout to fire;
- `patient`: 30 s timeouts, for the tests that need hostile connections to stay open while a
  well-behaved client is measured (500 slow clients, the pipelining flood).

Numbers (latency under load, RSS growth) are printed with `-s` and collected in docs/hardening.md;
the assertions only say "bounded" and "within a few seconds", never "fast".
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.hostile_corpus import (
    PROBE,
    fd_count,
    healthz_latency,
    incident_lines,
    read_final,
    rss_kib,
    settle,
    thread_count,
    wait_closed,
)
from tests.support import MODES, ServerProcess, running_server

STRICT = 2.0  # seconds: header / body / keep-alive timeout of the strict server
SLACK = 4.0  # seconds a timeout may fire late on 2 shared, busy cores
STRICT_ARGS = ("--header-timeout", "2", "--body-timeout", "2", "--keepalive-timeout", "2")
PATIENT_ARGS = ("--header-timeout", "30", "--body-timeout", "30", "--keepalive-timeout", "30")


@pytest.fixture(scope="module", params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def strict(mode: str) -> Iterator[ServerProcess]:
    with running_server(mode, *STRICT_ARGS) as server:
        yield server
        assert server.proc.poll() is None, f"{mode} died: {server.stderr_text()[-2000:]}"


@pytest.fixture(scope="module")
def patient(mode: str) -> Iterator[ServerProcess]:
    with running_server(mode, *PATIENT_ARGS) as server:
        yield server
        assert server.proc.poll() is None, f"{mode} died: {server.stderr_text()[-2000:]}"


class PeakRSS:
    """Sample a process's RSS every 20 ms in a thread; `.peak` is the highest seen (KiB)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = rss_kib(pid)
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            with contextlib.suppress(OSError, RuntimeError):
                self.peak = max(self.peak, rss_kib(self.pid))

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.start) / 1024


def trickle(sock: socket.socket, data: bytes, interval: float, stop: threading.Event) -> None:
    for i in range(len(data)):
        if stop.wait(interval):
            return
        try:
            sock.send(data[i : i + 1])
        except OSError:
            return


# --------------------------------------------------------------------------------------------
# Slow and silent clients
# --------------------------------------------------------------------------------------------


def trickled_head(server: ServerProcess) -> tuple[int, bool, bytes, float]:
    """A head sent a byte a second (two minutes' worth): 408 and close at the header timeout."""
    head = b"GET /healthz HTTP/1.1\r\nHost: calc.test\r\nX-Slow: " + b"z" * 100 + b"\r\n\r\n"
    stop = threading.Event()
    with server.connect(timeout=STRICT + SLACK + 5) as sock:
        started = time.monotonic()
        threading.Thread(target=trickle, args=(sock, head, 1.0, stop), daemon=True).start()
        try:
            response = read_final(sock, buffer := bytearray())
            closed, extra = wait_closed(sock, buffer, SLACK)
        finally:
            stop.set()
        return response.status, closed, extra, time.monotonic() - started


def silent(server: ServerProcess) -> tuple[int, bool, bytes, float]:
    """A connection that never sends a byte: closed, and nothing is written to it."""
    with server.connect(timeout=STRICT + SLACK + 5) as sock:
        started = time.monotonic()
        closed, data = wait_closed(sock, bytearray(), STRICT + SLACK)
        return 0, closed, data, time.monotonic() - started


def idle_keepalive(server: ServerProcess) -> tuple[int, bool, bytes, float]:
    """Served once, then silent: closed at the keep-alive timeout, nothing written."""
    with server.connect(timeout=STRICT + SLACK + 5) as sock:
        sock.sendall(PROBE)
        buffer = bytearray()
        assert read_final(sock, buffer).status == 200
        started = time.monotonic()
        closed, data = wait_closed(sock, buffer, STRICT + SLACK)
        return 0, closed, data, time.monotonic() - started


def slow_body(server: ServerProcess) -> tuple[int, bool, bytes, float]:
    """A body sent a byte every 0.5 s: 408 and close at the body timeout."""
    head = (b"POST /calculate HTTP/1.1\r\nHost: calc.test\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 200\r\n\r\n")
    stop = threading.Event()
    with server.connect(timeout=STRICT + SLACK + 5) as sock:
        sock.sendall(head)
        started = time.monotonic()
        threading.Thread(target=trickle, args=(sock, b"1+" * 100, 0.5, stop), daemon=True).start()
        try:
            response = read_final(sock, buffer := bytearray())
            closed, extra = wait_closed(sock, buffer, SLACK)
        finally:
            stop.set()
        return response.status, closed, extra, time.monotonic() - started


TIMEOUT_SCENARIOS = {
    "trickled head": (trickled_head, 408),
    "silent connection": (silent, 0),
    "idle keep-alive": (idle_keepalive, 0),
    "slow body": (slow_body, 408),
}


def test_slow_and_silent_clients_are_timed_out(strict: ServerProcess) -> None:
    """All four at once (they only wait): 408 + close, or a silent close, within a few seconds."""
    with ThreadPoolExecutor(len(TIMEOUT_SCENARIOS)) as pool:
        futures = {name: pool.submit(fn, strict) for name, (fn, _) in TIMEOUT_SCENARIOS.items()}
        results = {name: future.result() for name, future in futures.items()}
    print(f"\n[{strict.mode}] timeouts (2 s): " + ", ".join(
        f"{name} -> {status or 'closed'} after {elapsed:.2f}s"
        for name, (status, _, _, elapsed) in results.items()))
    for name, (status, closed, extra, elapsed) in results.items():
        wanted = TIMEOUT_SCENARIOS[name][1]
        assert status == wanted, f"{name}: status {status}, wanted {wanted or 'none'}"
        assert closed, f"{name}: connection left open"
        assert extra == b"", f"{name}: unexpected bytes {extra[:80]!r}"
        assert elapsed < STRICT + SLACK, f"{name}: took {elapsed:.1f}s"


SLOW_KINDS = [
    b"",  # silent
    b"GET /healthz HTTP/1.1\r\nHost: calc.test\r\nX-Partial: ",  # head never finished
    b"POST /calculate HTTP/1.1\r\nHost: calc.test\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 100\r\n\r\n1+",  # body never finished
    b"POST /calculate HTTP/1.1\r\nHost: calc.test\r\nContent-Type: text/plain\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n2\r\n1+",  # chunked body never finished
]


def open_slow_clients(server: ServerProcess, count: int) -> list[socket.socket]:
    socks = []
    for i in range(count):
        sock = socket.create_connection(server.address, timeout=10)
        if SLOW_KINDS[i % len(SLOW_KINDS)]:
            sock.sendall(SLOW_KINDS[i % len(SLOW_KINDS)])
        socks.append(sock)
    return socks


def test_500_slow_clients_do_not_starve_a_normal_one(patient: ServerProcess) -> None:
    pid = patient.proc.pid
    healthz_latency(patient.address)  # warm up: assets loaded, first thread spawned
    fds0, threads0 = fd_count(pid), thread_count(pid)
    opened = time.monotonic()
    socks = open_slow_clients(patient, 500)
    try:
        open_seconds = time.monotonic() - opened
        deadline = time.monotonic() + 15  # let the server accept them all (a thread each)
        while fd_count(pid) < fds0 + 490 and time.monotonic() < deadline:
            time.sleep(0.1)
        held_fds = fd_count(pid)
        fresh = [healthz_latency(patient.address) for _ in range(20)]
        with patient.connect() as sock:  # and a keep-alive client
            buffer = bytearray()
            kept = []
            for _ in range(20):
                start = time.perf_counter()
                sock.sendall(PROBE)
                assert read_final(sock, buffer).status == 200
                kept.append(time.perf_counter() - start)
    finally:
        for sock in socks:
            sock.close()
    latencies = fresh + kept
    print(
        f"\n[{patient.mode}] 500 slow clients opened in {open_seconds:.2f}s, server fds "
        f"{fds0}->{held_fds}; healthz latency median {statistics.median(latencies) * 1000:.1f} ms"
        f", max {max(latencies) * 1000:.1f} ms (fresh max {max(fresh) * 1000:.1f} ms)"
    )
    assert held_fds >= fds0 + 490, "the slow clients were not all being held open"
    assert max(latencies) < 5.0
    fds, threads = settle(pid, fds0, threads0, timeout=15, slack=2)
    assert fds <= fds0 + 2, f"descriptors leaked: {fds0} -> {fds}"
    assert threads <= threads0 + 2, f"threads leaked: {threads0} -> {threads}"


# --------------------------------------------------------------------------------------------
# Bodies
# --------------------------------------------------------------------------------------------


def endless_chunked(sock: socket.socket, stop: threading.Event, sent: list[int]) -> None:
    chunk = b"10000\r\n" + b"1" * 0x10000 + b"\r\n"
    with contextlib.suppress(OSError):
        sock.sendall(b"POST /calculate HTTP/1.1\r\nHost: calc.test\r\n"
                     b"Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
        while not stop.is_set() and sent[0] < 64 * 1024 * 1024:
            sock.sendall(chunk)
            sent[0] += len(chunk)


def test_endless_chunked_body_stops_at_the_limit(strict: ServerProcess) -> None:
    pid = strict.proc.pid
    results = []
    with PeakRSS(pid) as rss:
        for _ in range(4):
            stop, sent = threading.Event(), [0]
            with strict.connect(timeout=15) as sock:
                sender = threading.Thread(target=endless_chunked, args=(sock, stop, sent),
                                          daemon=True)
                sender.start()
                try:
                    response = read_final(sock, buffer := bytearray())
                    closed, _ = wait_closed(sock, buffer, SLACK)
                finally:
                    stop.set()
                sender.join(10)
            results.append((response.status, closed, sent[0]))
    print(f"\n[{strict.mode}] endless chunked: sent up to {max(r[2] for r in results) >> 10} KiB"
          f" before 413; server RSS {rss.start >> 10}->{rss.peak >> 10} MiB peak")
    assert all(status == 413 and closed for status, closed, _ in results), results
    assert all(sent < 16 * 1024 * 1024 for _, _, sent in results), "the server kept reading"
    assert rss.growth_mib < 24, f"RSS grew {rss.growth_mib:.1f} MiB for 1 MiB bodies"


def test_parallel_big_bodies_stay_within_the_limit(strict: ServerProcess) -> None:
    """Ten clients at once each send a whole 1 MiB body of `(`: answered, memory bounded."""
    pid = strict.proc.pid
    body = b"(" * (1024 * 1024)
    head = (b"POST /calculate HTTP/1.1\r\nHost: calc.test\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    statuses: list[int] = []

    def client() -> None:
        with strict.connect(timeout=20) as sock:
            sock.sendall(head + body)
            statuses.append(read_final(sock, bytearray()).status)

    with PeakRSS(pid) as rss:
        threads = [threading.Thread(target=client) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    print(f"\n[{strict.mode}] 10 x 1 MiB bodies: statuses {sorted(set(statuses))}; "
          f"RSS {rss.start >> 10}->{rss.peak >> 10} MiB peak")
    assert len(statuses) == 10 and set(statuses) <= {413, 422}
    assert rss.growth_mib < 80, f"RSS grew {rss.growth_mib:.1f} MiB for 10 MiB of bodies"


# --------------------------------------------------------------------------------------------
# Pipelining flood
# --------------------------------------------------------------------------------------------


def calc_request(i: int) -> bytes:
    return (b"GET /calculate?expr=%d HTTP/1.1\r\nHost: calc.test\r\nAccept: text/plain\r\n\r\n"
            % i)


ASSET_REQUEST = b"GET /static/app.js HTTP/1.1\r\nHost: calc.test\r\n\r\n"


def pipeline_flood(server: ServerProcess, count: int, pause: float) -> tuple[float, float, float]:
    """Send `count` pipelined requests without reading for `pause` s, then read them in order.

    Every other request fetches an 18 KB asset so that unread responses, if the server buffered
    them, would show in its RSS. Returns (RSS growth MiB, seconds to read all, MiB sent by pause).
    """
    pid = server.proc.pid
    payload = b"".join(calc_request(i) if i % 2 == 0 else ASSET_REQUEST for i in range(count))
    sent = [0]

    def send_all(sock: socket.socket) -> None:
        view = memoryview(payload)
        with contextlib.suppress(OSError):
            while sent[0] < len(view):
                sent[0] += sock.send(view[sent[0] : sent[0] + 65536])

    with server.connect(timeout=60) as sock, PeakRSS(pid) as rss:
        sender = threading.Thread(target=send_all, args=(sock,), daemon=True)
        sender.start()
        time.sleep(pause)
        sent_by_pause = sent[0] / 2**20
        started = time.monotonic()
        buffer = bytearray()
        asset_length = None
        for i in range(count):
            response = read_final(sock, buffer)
            assert response.status == 200, (i, response.status, response.body[:200])
            if i % 2 == 0:
                assert response.body.decode().strip() == str(i), (i, response.body[:100])
            else:
                asset_length = asset_length or len(response.body)
                assert len(response.body) == asset_length > 10_000
        read_seconds = time.monotonic() - started
        sender.join(10)
    return rss.growth_mib, read_seconds, sent_by_pause


def test_pipelining_flood_is_bounded_and_in_order(patient: ServerProcess) -> None:
    growth, seconds, sent = pipeline_flood(patient, 4000, pause=1.5)
    print(f"\n[{patient.mode}] 4,000 pipelined (2,000 x 18 KB asset): {sent:.2f} MiB accepted "
          f"while unread, RSS +{growth:.1f} MiB, all read in order in {seconds:.1f}s")
    # 2,000 unread 18 KB responses would be 36 MiB if the server queued them.
    assert growth < 20, f"RSS grew {growth:.1f} MiB: responses are being queued without bound"
    healthz_latency(patient.address)


@pytest.mark.slow
def test_pipelining_flood_100k(patient: ServerProcess) -> None:
    growth, seconds, sent = pipeline_flood(patient, 100_000, pause=5.0)
    print(f"\n[{patient.mode}] 100,000 pipelined: {sent:.2f} MiB accepted while unread, "
          f"RSS +{growth:.1f} MiB, all read in order in {seconds:.1f}s")
    assert growth < 40, f"RSS grew {growth:.1f} MiB"


# --------------------------------------------------------------------------------------------
# Client faults: resets, half-closes, vanishing readers
# --------------------------------------------------------------------------------------------


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_client_faults_leave_no_trace(strict: ServerProcess) -> None:
    pid = strict.proc.pid
    healthz_latency(strict.address)
    time.sleep(0.3)
    fds0, threads0 = fd_count(pid), thread_count(pid)
    log0 = len(strict.stderr_text())

    # 1. Reset mid-request: mid-head, mid-body, mid-chunk, right after a full request.
    partials = [
        b"GET /healthz HTTP/1.1\r\nHo",
        b"POST /calculate HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 50\r\n\r\n1+",
        b"POST /calculate HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\n1+",
        PROBE,
    ]
    for i in range(60):
        sock = strict.connect()
        sock.sendall(partials[i % len(partials)])
        if i % 8 == 0:
            time.sleep(0.01)
        reset(sock)

    # 2. Half-close after sending a request: the response still arrives.
    for raw in (PROBE, calc_request(7), PROBE * 3):
        with strict.connect() as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            buffer = bytearray()
            for _ in range(raw.count(b"HTTP/1.1\r\n")):
                assert read_final(sock, buffer).status == 200
            closed, extra = wait_closed(sock, buffer, SLACK)
            assert closed and extra == b""

    # 3. Vanish while a large response is being written: 200 pipelined asset requests
    #    (~3.6 MB of responses), read a little, then close (FIN) or reset (RST).
    for i in range(10):
        sock = strict.connect()
        sock.sendall(ASSET_REQUEST * 200)
        sock.recv(4096)
        if i % 2:
            reset(sock)
        else:
            sock.close()

    time.sleep(0.2)
    assert healthz_latency(strict.address) < 5
    fds, threads = settle(pid, fds0, threads0, timeout=STRICT + SLACK + 5, slack=1)
    log = strict.stderr_text()[log0:]
    incidents = incident_lines(log)
    print(f"\n[{strict.mode}] faults: fds {fds0}->{fds}, threads {threads0}->{threads}, "
          f"{len(incidents)} log lines besides access lines, {log.count('Traceback')} tracebacks")
    assert fds <= fds0 + 1, f"descriptors leaked: {fds0} -> {fds}"
    assert threads <= threads0 + 1, f"threads leaked: {threads0} -> {threads}"
    assert log.count("Traceback") == 0, log[-3000:]
    assert len(incidents) < 20, f"log storm: {len(incidents)} lines: {incidents[:20]}"
