#!/usr/bin/env python3
"""Soak one server mode: minutes of mixed well-behaved load with hostile clients mixed in.

    python scripts/soak.py --mode asyncio --seconds 300
    python scripts/soak.py --mode select --seconds 600 --clients 12 --hostile 6 --json out.json

Well-behaved clients (threads) loop over what real clients do: keep-alive sessions, pipelined
bursts, form/JSON/text posts and GETs whose answers are checked (a+b must come back as a+b),
static assets with ETag revalidation, HTTP/1.0, `Connection: close`, `Expect: 100-continue`.
Every one of their requests must succeed: any error, wrong answer or timeout is a failure.

Hostile clients loop over what attackers and broken clients do: replay a random case of the
hostile corpus (tests/hostile_corpus.py) and check its status; hold a half-sent head or body
(slowloris) or a silent connection until the server times it out; reset mid-request; send an
endless chunked body; pipeline without reading and vanish; submit expensive expressions.

A sampler records the server's RSS, descriptors and threads every two seconds. At the end, once
the hostile connections have been timed out, descriptors must be back within a few of the idle
server's count, and RSS within max(12 MiB, 25 %) of the first sample after the warm-up (a fifth
of the run): allocators keep their high-water marks, leaks keep climbing. Exit status 0 only
with zero well-behaved failures and flat resources.
Loopback only; the server is started (and stopped) by tests/support.py's `running_server`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import socket
import statistics
import struct
import sys
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hostile_corpus import CASES, cpu_seconds, fd_count, replay, rss_kib, thread_count
from tests.support import MODES, RawResponse, read_response, running_server

HOST = b"Host: soak.test\r\n"
# Short server timeouts so hostile connections are reaped quickly and resources can flatten.
SERVER_ARGS = ("--header-timeout", "2", "--body-timeout", "2", "--keepalive-timeout", "2")
FD_SLACK = 4  # descriptors: a connection or two may be mid-close when the last sample is taken
RSS_SLACK_KIB = 12 * 1024  # allocator high-water marks: threads' stacks, freed-not-returned arenas
RSS_SLACK_RATIO = 0.25


@dataclass
class Tally:
    requests: int = 0
    failures: int = 0
    failure_samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    hostile_actions: dict[str, int] = field(default_factory=dict)
    hostile_surprises: int = 0
    surprise_samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, seconds: float) -> None:
        with self.lock:
            self.requests += 1
            if len(self.latencies) < 200_000:
                self.latencies.append(seconds)

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures += 1
            if len(self.failure_samples) < 20:
                self.failure_samples.append(what)

    def hostile(self, action: str, surprise: str | None = None) -> None:
        with self.lock:
            self.hostile_actions[action] = self.hostile_actions.get(action, 0) + 1
            if surprise is not None:
                self.hostile_surprises += 1
                if len(self.surprise_samples) < 20:
                    self.surprise_samples.append(f"{action}: {surprise}")


# --------------------------------------------------------------------------------------------
# Well-behaved clients
# --------------------------------------------------------------------------------------------


class Client:
    """One keep-alive connection; every exchange is checked."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=15)
        self.buffer = bytearray()

    def close(self) -> None:
        self.sock.close()

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def read(self, head_only: bool = False) -> RawResponse:
        while True:
            response = read_response(self.sock, self.buffer, head_only=head_only)
            if response.status >= 200:
                return response


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def calc_text(expr: str, extra: bytes = b"") -> bytes:
    body = expr.encode()
    return (b"POST /calculate HTTP/1.1\r\n" + HOST + b"Content-Type: text/plain\r\n"
            b"Accept: text/plain\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body)


def calc_json(expr: str) -> bytes:
    body = json.dumps({"expr": expr}).encode()
    return (b"POST /calculate HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


def calc_form(expr: str) -> bytes:
    body = urllib.parse.urlencode({"expr": expr}).encode()
    return (b"POST /calculate HTTP/1.1\r\n" + HOST
            + b"Content-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


def calc_get(expr: str) -> bytes:
    query = urllib.parse.quote(expr, safe="")
    return f"GET /calculate?expr={query} HTTP/1.1\r\n".encode() + HOST + b"\r\n"


def get(path: str, extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return b"GET " + path.encode() + b" HTTP/" + version + b"\r\n" + HOST + extra + b"\r\n"


def check_sum(response: RawResponse, total: int, kind: str) -> None:
    expect(response.status == 200, f"{kind}: status {response.status} {response.body[:120]!r}")
    if kind == "text":
        expect(response.body.decode().strip() == str(total), f"text: {response.body[:80]!r}")
    else:
        payload = json.loads(response.body)
        expect(payload.get("result") == str(total), f"{kind}: {payload!r}")


def session(address: tuple[str, int], rng: random.Random, tally: Tally) -> None:
    """A keep-alive connection with 1-15 mixed, checked requests, some pipelined."""
    client = Client(address)
    try:
        for _ in range(rng.randint(1, 15)):
            action = rng.random()
            started = time.perf_counter()
            if action < 0.35:
                a, b = rng.randint(-10**6, 10**6), rng.randint(0, 10**6)
                kind = rng.choice(["text", "json", "form", "get"])
                build = {"text": calc_text, "json": calc_json, "form": calc_form,
                         "get": calc_get}[kind]
                client.send(build(f"{a} + {b}"))
                check_sum(client.read(), a + b, kind)
            elif action < 0.5:
                n = rng.randint(2, 12)  # pipelined burst, answers must come in order
                client.send(b"".join(calc_text(f"{i}*3") for i in range(n)))
                for i in range(n):
                    check_sum(client.read(), i * 3, "text")
            elif action < 0.65:
                client.send(get("/healthz"))
                expect(client.read().status == 200, "healthz")
            elif action < 0.75:
                client.send(get("/static/app.js"))
                first = client.read()
                expect(first.status == 200 and len(first.body) > 1000, "asset")
                etag = first.header("etag") or ""
                client.send(get("/static/app.js", b"If-None-Match: " + etag.encode() + b"\r\n"))
                expect(client.read().status == 304, "asset revalidation")
            elif action < 0.85:
                client.send(get("/"))
                page = client.read()
                expect(page.status == 200 and b"<" in page.body, "page")
            elif action < 0.9:
                client.send(b"HEAD / HTTP/1.1\r\n" + HOST + b"\r\n")
                expect(client.read(head_only=True).status == 200, "HEAD /")
            elif action < 0.95:
                client.send(calc_text("7*6", b"Expect: 100-continue\r\n"))
                check_sum(client.read(), 42, "text")
            else:
                client.send(get("/nowhere"))
                expect(client.read().status == 404, "404")
            tally.ok(time.perf_counter() - started)
        # End the session one of three ways: our close, Connection: close, or HTTP/1.0.
        ending = rng.random()
        if ending < 0.3:
            client.send(get("/healthz", b"Connection: close\r\n"))
            expect(client.read().status == 200, "close")
            expect(client.sock.recv(1) == b"", "closed after Connection: close")
        elif ending < 0.4:
            client.send(get("/healthz", version=b"1.0"))
            expect(client.read().status == 200, "1.0")
            expect(client.sock.recv(1) == b"", "closed after HTTP/1.0")
    finally:
        client.close()


def well_behaved(address: tuple[str, int], seed: int, stop: threading.Event,
                 tally: Tally) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            session(address, rng, tally)
        except Exception as exc:  # any error of a well-behaved client is a soak failure
            tally.fail(f"{type(exc).__name__}: {exc}"[:300])


# --------------------------------------------------------------------------------------------
# Hostile clients
# --------------------------------------------------------------------------------------------

PARTIALS = [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ",
    b"POST /calculate HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 100\r\n\r\n1+",
    b"",
]
EXPENSIVE = [b"10^10^10^10", b"1000000!", b"(" * 300 + b"1" + b")" * 300, b"2^10^10",
             b"sqrt(" * 300 + b"2" + b")" * 300, b"1+" * 4999 + b"11", b"(" * 900_000]


def rst_close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def hostile_once(address: tuple[str, int], rng: random.Random, tally: Tally,
                 stop: threading.Event) -> None:
    action = rng.choice(["corpus", "corpus", "corpus", "slowloris", "reset", "endless-body",
                         "unread-pipeline", "expensive"])
    if action == "corpus":
        case = rng.choice(CASES)
        outcome = replay(address, case, timeout=15)
        got = [r.status for r in outcome.responses]
        if not all(s in allowed for s, allowed in zip(got, case.statuses, strict=True)):
            tally.hostile(action, f"{case.name}: {got}")
        else:
            tally.hostile(action)
    elif action == "slowloris":
        sock = socket.create_connection(address, timeout=15)
        with contextlib.suppress(OSError):
            sock.sendall(rng.choice(PARTIALS))
            stop.wait(rng.uniform(0.5, 4.0))  # the server may time it out first: fine either way
        sock.close()
        tally.hostile(action)
    elif action == "reset":
        sock = socket.create_connection(address, timeout=15)
        with contextlib.suppress(OSError):
            sock.sendall(rng.choice(PARTIALS[:2]))
        rst_close(sock)
        tally.hostile(action)
    elif action == "endless-body":
        with socket.create_connection(address, timeout=15) as sock:
            sent = 0
            with contextlib.suppress(OSError):
                sock.sendall(b"POST /calculate HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain"
                             b"\r\nTransfer-Encoding: chunked\r\n\r\n")
                chunk = b"8000\r\n" + b"1" * 0x8000 + b"\r\n"
                while sent < 8 * 1024 * 1024:
                    sock.sendall(chunk)
                    sent += len(chunk)
            try:
                status = read_response(sock, bytearray()).status
            except (OSError, ConnectionError):
                status = 0
        tally.hostile(action, None if status == 413 else f"status {status} after {sent} B")
    elif action == "unread-pipeline":
        with socket.create_connection(address, timeout=15) as sock, contextlib.suppress(OSError):
            sock.sendall(get("/static/app.js") * rng.randint(10, 200))
            stop.wait(rng.uniform(0.1, 1.0))
            if rng.random() < 0.5:
                rst_close(sock)
        tally.hostile(action)
    else:
        expr = rng.choice(EXPENSIVE)
        with socket.create_connection(address, timeout=15) as sock:
            sock.sendall(calc_text(expr.decode()))
            status = read_response(sock, bytearray()).status
        tally.hostile(action, None if status in (200, 413, 422) else f"status {status}")


def hostile(address: tuple[str, int], seed: int, stop: threading.Event, tally: Tally) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            hostile_once(address, rng, tally, stop)
        except Exception as exc:  # a hostile client may be cut off: note it, keep going
            tally.hostile("error", f"{type(exc).__name__}: {exc}"[:200])


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    rss_kib: int
    fds: int
    threads: int
    cpu: float


@dataclass
class SoakReport:
    mode: str
    seconds: float
    clients: int
    hostile: int
    requests: int
    failures: int
    failure_samples: list[str]
    latency_ms_median: float
    latency_ms_p99: float
    latency_ms_max: float
    hostile_actions: dict[str, int]
    hostile_surprises: int
    surprise_samples: list[str]
    idle_start: Sample  # before any load
    baseline: Sample  # after the warm-up, under load
    end: Sample  # after the load, once hostile leftovers were timed out
    peak_rss_kib: int
    peak_fds: int
    server_alive: bool
    tracebacks: int
    fds_flat: bool
    rss_flat: bool

    @property
    def passed(self) -> bool:
        return (self.failures == 0 and self.fds_flat and self.rss_flat and self.server_alive
                and self.requests > 0)

    def summary(self) -> str:
        i, b, e = self.idle_start, self.baseline, self.end
        lines = [
            f"soak {self.mode}: {self.seconds:.0f}s, {self.clients} well-behaved + "
            f"{self.hostile} hostile clients",
            f"  well-behaved: {self.requests} requests, {self.failures} failures; latency "
            f"median {self.latency_ms_median:.1f} ms, p99 {self.latency_ms_p99:.1f} ms, "
            f"max {self.latency_ms_max:.0f} ms",
            f"  hostile: {sum(self.hostile_actions.values())} actions "
            f"{dict(sorted(self.hostile_actions.items()))}, {self.hostile_surprises} surprises",
            f"  server: RSS {i.rss_kib / 1024:.1f} idle, {b.rss_kib / 1024:.1f} warm -> "
            f"{e.rss_kib / 1024:.1f} MiB end (peak {self.peak_rss_kib / 1024:.1f}); fds {i.fds} "
            f"idle -> {e.fds} end (peak {self.peak_fds}); threads {i.threads} -> {e.threads}; "
            f"CPU {e.cpu - i.cpu:.1f}s, "
            f"{self.tracebacks} tracebacks",
            f"  verdict: {'PASS' if self.passed else 'FAIL'}",
        ]
        lines += [f"  failure: {s}" for s in self.failure_samples[:10]]
        lines += [f"  surprise: {s}" for s in self.surprise_samples[:10]]
        return "\n".join(lines)


def sample(pid: int, started: float) -> Sample:
    return Sample(time.monotonic() - started, rss_kib(pid), fd_count(pid), thread_count(pid),
                  cpu_seconds(pid))


def soak(mode: str, seconds: float, clients: int = 8, hostile_clients: int = 4,
         seed: int = 1, server_args: tuple[str, ...] = SERVER_ARGS,
         progress: bool = False) -> SoakReport:
    tally = Tally()
    stop = threading.Event()
    with running_server(mode, *server_args) as server:
        pid = server.proc.pid
        started = time.monotonic()
        samples = [sample(pid, started)]
        threads = [threading.Thread(target=well_behaved, args=(server.address, seed + i, stop,
                                                                tally), daemon=True)
                   for i in range(clients)]
        threads += [threading.Thread(target=hostile, args=(server.address, seed + 1000 + i,
                                                           stop, tally), daemon=True)
                    for i in range(hostile_clients)]
        for t in threads:
            t.start()
        warmup = max(2.0, seconds / 5)
        baseline: Sample | None = None
        while time.monotonic() - started < seconds:
            time.sleep(min(2.0, max(0.0, seconds - (time.monotonic() - started))))
            samples.append(sample(pid, started))
            if baseline is None and samples[-1].t >= warmup:
                baseline = samples[-1]
            if progress:
                s = samples[-1]
                print(f"  t={s.t:5.0f}s requests={tally.requests} failures={tally.failures} "
                      f"rss={s.rss_kib / 1024:.1f}MiB fds={s.fds} threads={s.threads}",
                      flush=True)
        stop.set()
        for t in threads:
            t.join(30)
        # Let the server time out whatever the hostile clients left, then take the last sample.
        quiet_until = time.monotonic() + 6
        end = sample(pid, started)
        while time.monotonic() < quiet_until:
            time.sleep(0.5)
            end = sample(pid, started)
            if end.fds <= samples[0].fds and end.threads <= samples[0].threads:
                break
        alive = server.proc.poll() is None
        tracebacks = server.stderr_text().count("Traceback")
    baseline = baseline or samples[0]
    lat = sorted(tally.latencies) or [0.0]
    rss_limit = baseline.rss_kib + max(RSS_SLACK_KIB, baseline.rss_kib * RSS_SLACK_RATIO)
    return SoakReport(
        mode=mode, seconds=seconds, clients=clients, hostile=hostile_clients,
        requests=tally.requests, failures=tally.failures, failure_samples=tally.failure_samples,
        latency_ms_median=statistics.median(lat) * 1000,
        latency_ms_p99=lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        latency_ms_max=lat[-1] * 1000, hostile_actions=tally.hostile_actions,
        hostile_surprises=tally.hostile_surprises, surprise_samples=tally.surprise_samples,
        idle_start=samples[0], baseline=baseline, end=end,
        peak_rss_kib=max(s.rss_kib for s in samples),
        peak_fds=max(s.fds for s in samples), server_alive=alive, tracebacks=tracebacks,
        fds_flat=end.fds <= samples[0].fds + FD_SLACK, rss_flat=end.rss_kib <= rss_limit,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, default="asyncio")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--clients", type=int, default=8, help="well-behaved client threads")
    parser.add_argument("--hostile", type=int, default=4, help="hostile client threads")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = soak(args.mode, args.seconds, args.clients, args.hostile, args.seed, progress=True)
    print(report.summary(), flush=True)
    if args.json:
        args.json.write_text(json.dumps({**asdict(report), "passed": report.passed}, indent=2))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
