#!/usr/bin/env python3
"""Benchmark the five server modes side by side with uvicorn, aiohttp and a raw-Protocol ceiling.

    python3 scripts/bench.py                    # the full matrix, 3 runs x 5 s (about 20 minutes)
    python3 scripts/bench.py --quick            # 1 run x 2 s, reduced matrix (under 2 minutes)
    python3 scripts/bench.py --modes asyncio --peers uvicorn,raw --scenarios post:64

What it measures, per server:
- load: `POST /calculate` (form-encoded, keep-alive, a corpus of varied expressions) and `GET /`
  at 1, 64 and 512 connections: requests/s, p50 and p99 latency, server CPU seconds per 1,000
  requests (utime + stime from /proc/PID/stat across the run), errors as the client saw them.
- idle: 1,000 / 5,000 / 10,000 idle keep-alive connections (each has made one request), held by a
  separate client process: server RSS per held connection (VmRSS delta), thread count, and the
  latency of fresh clients (connect, request, answer) while they are held. A fresh server process
  per point, so the RSS baseline is clean.

Strategy: each server runs pinned to one core and every client (wrk, the idle holder, this script)
to the other, so the server gets a whole core and the figures are comparable on a 2-core machine.
Load points interleave the servers (run 1 of every server, then run 2, ...) so drift in the
machine's background load spreads over all of them instead of favouring whoever ran first. Each
point is repeated `--runs` times; tables give the median and the [min-max] spread.

Load generator: wrk (Debian's package) with scripts/bench_post.lua, one thread; without wrk, the
built-in asyncio client (scripts/bench_peers/load_client.py), which is slower than the fast servers
and says so in the report. Peers whose packages are missing (the `bench` extra) are skipped with a
message; rich (progress) and matplotlib (charts) are optional too.

Everything talks to 127.0.0.1 only; every step is bounded in time; all child processes are stopped
on exit, on Ctrl-C and on SIGTERM (and die with this script via PR_SET_PDEATHSIG on Linux).
Outputs (default docs/benchmarks/, or test-artifacts/bench-quick/ with --quick): results.json,
README.md (tables, ratios, goals) and PNG charts.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import importlib.util
import json
import os
import platform
import random
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
PEERS_DIR = SCRIPTS / "bench_peers"
LUA_SCRIPT = SCRIPTS / "bench_post.lua"
HOST = "127.0.0.1"

MODES: dict[str, str] = {
    "asyncio": "app",
    "socketserver": "legacy.socketserver_server",
    "threaded": "legacy.threaded_server",
    "select": "legacy.select_server",
    "selectors": "legacy.selectors_server",
}
# peer name -> (script, modules it needs)
PEERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "uvicorn": ("uvicorn_app.py", ("uvicorn", "httptools", "uvloop")),
    "aiohttp": ("aiohttp_app.py", ("aiohttp", "uvloop")),
    "raw": ("raw_protocol.py", ("uvloop",)),
    "streams": ("streams_constant.py", ("uvloop",)),
}
LABELS: dict[str, str] = {
    "asyncio": "asyncio (python -m app)",
    "socketserver": "socketserver (legacy)",
    "threaded": "threaded (legacy)",
    "select": "select (legacy)",
    "selectors": "selectors (legacy)",
    "uvicorn": "uvicorn + httptools + uvloop",
    "aiohttp": "aiohttp + uvloop",
    "raw": "raw asyncio.Protocol (ceiling)",
    "streams": "bare start_server streams (streams ceiling)",
}

LOAD_KINDS = ("post", "get")
FULL_MATRIX = "post:1,64,512;get:1,64,512;idle:1000,5000,10000"
QUICK_MATRIX = "post:64;get:64;idle:1000"

START_TIMEOUT = 30.0  # seconds for a server to print its listening line (2 busy cores)
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
CLIENT_TIMEOUT = 5.0  # wrk --timeout: a response slower than this counts as a timeout error
IDLE_KEEPALIVE = "600"  # seconds; servers must not reap the idle connections mid-measurement
IDLE_OPEN_DEADLINE = 120.0  # seconds for the holder to open all its connections
CORPUS_SIZE = 1200  # distinct expressions per run: far more than any sensible answer cache
FRESH_SAMPLES = 50  # fresh-client requests measured while the idle connections are held
STALL_MS = 20.0  # median ms of sequential requests above which a server is flagged as stalling
STDERR_CAP = 20 * 1024 * 1024  # a server log past this is truncated between runs

# Varied expressions: integers, exact fractions, big powers, decimals, irrationals, nesting.
# Checked against app.calculator before the run; any it rejects is dropped (and reported).
CORPUS_CANDIDATES = (
    "1+2",
    "2*3+4",
    "0.1+0.2",
    "1/3",
    "1/3+1/6",
    "22/7-3",
    "2^10",
    "2^100",
    "2^64-1",
    "(1+2)*(3+4)*(5+6)",
    "((2+3)*4-5)/6",
    "-7+3*-2",
    "12345679*9",
    "3.14159*2",
    "1e3/7",
    "sqrt(2)",
    "sqrt(16)+sqrt(9)",
    "pi",
    "2*pi*6371",
    "e^2",
    "sin(pi/6)",
    "cos(0)+sin(0)",
    "ln(10)",
    "log(1000)",
    "abs(-42)",
    "10!",
    "100/7*7",
    "(1/2)^8",
    "1.5e-3*4",
    "99999999*99999999",
)


# ----------------------------------------------------------------------------------------------
# Child processes


class Children:
    """Every process this script started, so that all of them are stopped whatever happens."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.history: list[int] = []  # every pid ever started, for the record (and the tests)

    def spawn(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(list(argv), cwd=ROOT, env=env, preexec_fn=_child_setup, **kwargs)
        self.procs.append(proc)
        self.history.append(proc.pid)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit status."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(5)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if proc in self.procs:
            self.procs.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        live = [p for p in self.procs if p.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for proc in list(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
            self.procs.remove(proc)


def _load_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Callable[[int, int], int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _load_prctl()
PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    """In the child before exec: die with the parent (even on SIGKILL of this script)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def raise_nofile(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE (children inherit it); root may raise the hard limit too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else max(hard, wanted)
    for limit in ((target, target), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
            return limit[0]
        except (ValueError, OSError):
            continue
    return soft


def pinned(core: int | None, argv: Sequence[str]) -> list[str]:
    if core is None:
        return list(argv)
    return ["taskset", "-c", str(core), *argv]


# ----------------------------------------------------------------------------------------------
# /proc readings


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS (KiB) and Threads from /proc/PID/status."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                found[key] = int(value.split()[0])
    return found


# ----------------------------------------------------------------------------------------------
# Servers


@dataclass
class ServerSpec:
    name: str
    kind: str  # "mode" or "peer"
    argv: list[str]
    idle_args: list[str] = field(default_factory=list)


@dataclass
class Server:
    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self, limit: int = 2000) -> str:
        try:
            data = self.stderr_path.read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")

    def cap_stderr(self) -> bool:
        """Truncate a flooding log; returns True when it had to."""
        try:
            if self.stderr_path.stat().st_size > STDERR_CAP:
                os.truncate(self.stderr_path, 0)
                return True
        except OSError:
            pass
        return False


class StartError(Exception):
    pass


def start_server(
    children: Children, spec: ServerSpec, core: int | None, workdir: Path, *, idle: bool = False
) -> Server:
    """Start a server pinned to `core` and wait for its listening line."""
    tag = f"{spec.name}-{time.monotonic_ns()}"
    out_path, err_path = workdir / f"{tag}.out", workdir / f"{tag}.err"
    argv = [*spec.argv, "--host", HOST, "--port", "0", *(spec.idle_args if idle else [])]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        # Files, not pipes: nothing has to drain them, so no threads and no blocked servers.
        proc = children.spawn(pinned(core, argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        text = out_path.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith("listening on http://"):
                port = int(line.rsplit(":", 1)[1])
                return Server(spec, proc, port, err_path)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    children.stop(proc)
    tail = err_path.read_text(errors="replace")[-1500:]
    raise StartError(f"{spec.name}: no listening line within {START_TIMEOUT:.0f}s; stderr: {tail}")


# ----------------------------------------------------------------------------------------------
# A tiny blocking HTTP client, for checks and fresh-client latency


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


# ----------------------------------------------------------------------------------------------
# Load runs


@dataclass
class LoadClient:
    kind: str  # "wrk" or "asyncio"
    version: str
    core: int | None

    def argv(
        self, port: int, kind: str, connections: int, seconds: float, corpus: Path
    ) -> list[str]:
        url = f"http://{HOST}:{port}"
        if self.kind == "wrk":
            argv = [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds:g}s",
                "--latency",
                f"--timeout={CLIENT_TIMEOUT:g}s",
                "-s",
                str(LUA_SCRIPT),
                url,
                "--",
                kind,
            ]
            if kind == "post":
                argv.append(str(corpus))
        else:
            argv = [
                sys.executable,
                str(PEERS_DIR / "load_client.py"),
                "--port",
                str(port),
                "--connections",
                str(connections),
                "--duration",
                f"{seconds:g}",
                "--timeout",
                f"{CLIENT_TIMEOUT:g}",
            ]
            if kind == "post":
                argv += ["--corpus", str(corpus)]
        return pinned(self.core, argv)


def run_load(
    children: Children,
    client: LoadClient,
    server: Server,
    kind: str,
    connections: int,
    seconds: float,
    corpus: Path,
) -> dict[str, Any]:
    """One measured run; returns its figures or {"error": ...}."""
    if not server.alive():
        return {"error": f"server exited with status {server.proc.returncode}"}
    argv = client.argv(server.port, kind, connections, seconds, corpus)
    cpu_before = cpu_seconds(server.pid)
    proc = children.spawn(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = proc.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        children.stop(proc)
        return {"error": "load client did not finish in time"}
    children.procs.remove(proc)  # finished and reaped (on Ctrl-C it stays, for stop_all)
    if not server.alive():
        return {"error": f"server died during the run (status {server.proc.returncode})"}
    cpu = cpu_seconds(server.pid) - cpu_before
    status = proc_status(server.pid)
    summary = None
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("BENCH_JSON "):
            summary = json.loads(line[len("BENCH_JSON ") :])
    if summary is None:
        text = (err or out).decode(errors="replace").strip()[-400:]
        return {"error": f"no summary from the load client: {text}"}
    requests = int(summary["requests"])
    elapsed = summary["duration_us"] / 1e6
    errors = {k: int(v) for k, v in summary["errors"].items()}
    latency = summary["latency_us"]
    result: dict[str, Any] = {
        "requests": requests,
        "seconds": round(elapsed, 3),
        "rps": round(requests / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": latency["p50"] / 1000,
        "p90_ms": latency["p90"] / 1000,
        "p99_ms": latency["p99"] / 1000,
        "max_ms": latency["max"] / 1000,
        "cpu_s": round(cpu, 3),
        "cpu_per_1k": round(cpu / requests * 1000, 4) if requests else None,
        "errors": errors,
        "error_total": sum(errors.values()),
        "rss_kb": status.get("VmRSS", 0),
        "threads": status.get("Threads", 0),
    }
    if requests == 0:
        result["error"] = "no requests completed"
    if server.cap_stderr():
        result["note"] = "server log flooded (truncated)"
    return result


# ----------------------------------------------------------------------------------------------
# Idle runs


def read_json_line(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any] | None:
    """Read stdout lines until a `BENCH_JSON` line, within `timeout`."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    buffer = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.startswith(b"BENCH_JSON "):
                parsed: dict[str, Any] = json.loads(line[len(b"BENCH_JSON ") :])
                return parsed
    return None


def run_idle(
    children: Children,
    spec: ServerSpec,
    count: int,
    cores: tuple[int | None, int | None],
    workdir: Path,
    fresh_samples: int,
) -> dict[str, Any]:
    """A fresh server; hold `count` idle keep-alive connections; measure RSS and a fresh client."""
    server_core, client_core = cores
    try:
        server = start_server(children, spec, server_core, workdir, idle=True)
    except StartError as exc:
        return {"error": str(exc)}
    holder: subprocess.Popen[bytes] | None = None
    try:
        # Warm the server (first-request imports, caches) before taking the baseline.
        fresh_latencies(server.port, 10)
        time.sleep(0.3)
        base = proc_status(server.pid)
        argv = [
            sys.executable,
            str(PEERS_DIR / "idle_client.py"),
            "--port",
            str(server.port),
            "--count",
            str(count),
            "--open-deadline",
            f"{IDLE_OPEN_DEADLINE:g}",
        ]
        holder = children.spawn(
            pinned(client_core, argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        opened = read_json_line(holder, IDLE_OPEN_DEADLINE + 30)
        if opened is None:
            return {"error": "the idle holder reported nothing", "server_alive": server.alive()}
        time.sleep(1.0)  # let the server settle (threads started, buffers allocated)
        if not server.alive():
            return {
                "error": f"server died holding the connections (status {server.proc.returncode})",
                **_held(opened),
            }
        held = proc_status(server.pid)
        fresh, fresh_failures = fresh_latencies(server.port, fresh_samples)
        assert holder.stdin is not None
        holder.stdin.write(b"check\n")
        holder.stdin.flush()
        checked = read_json_line(holder, 30) or {}
        result: dict[str, Any] = {
            **_held(opened),
            "still_open": checked.get("still_open"),
            "rss_base_kb": base.get("VmRSS", 0),
            "rss_held_kb": held.get("VmRSS", 0),
            "threads_base": base.get("Threads", 0),
            "threads_held": held.get("Threads", 0),
            "fresh_failures": fresh_failures,
            "server_alive": server.alive(),
        }
        delta_bytes = (result["rss_held_kb"] - result["rss_base_kb"]) * 1024
        if opened["held"]:
            result["rss_per_conn_bytes"] = round(delta_bytes / opened["held"])
        threads = result["threads_held"] - result["threads_base"]
        if threads > 0:
            result["rss_per_thread_bytes"] = round(delta_bytes / threads)
        if fresh:
            ordered = sorted(fresh)
            result["fresh_p50_ms"] = round(statistics.median(ordered), 3)
            result["fresh_p99_ms"] = round(
                ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3
            )
            result["fresh_max_ms"] = round(ordered[-1], 3)
        if fresh_failures == fresh_samples:  # a finding (select's ceiling), not a harness error
            result["note"] = "no fresh client was answered while the connections were held"
        return result
    finally:
        if holder is not None:
            if holder.stdin is not None:
                with contextlib.suppress(OSError):
                    holder.stdin.write(b"exit\n")
                    holder.stdin.flush()
            children.stop(holder)
        children.stop(server.proc)


def _held(opened: dict[str, Any]) -> dict[str, Any]:
    return {
        "held": opened.get("held", 0),
        "failed": opened.get("failed", 0),
        "open_errors": opened.get("errors", {}),
        "open_seconds": opened.get("seconds"),
    }


# ----------------------------------------------------------------------------------------------
# The matrix, the corpus, the client


@dataclass(frozen=True)
class Matrix:
    load: list[tuple[str, int]]  # (kind, connections)
    idle: list[int]


def parse_matrix(text: str) -> Matrix:
    """`post:1,64,512;get:64;idle:1000` (a kind without counts takes the full matrix's)."""
    defaults = {
        kind: counts for kind, _, counts in (p.partition(":") for p in FULL_MATRIX.split(";"))
    }
    load: list[tuple[str, int]] = []
    idle: list[int] = []
    for part in filter(None, (p.strip() for p in text.replace(" ", ";").split(";"))):
        kind, _, counts = part.partition(":")
        if kind not in (*LOAD_KINDS, "idle"):
            raise SystemExit(f"unknown scenario {kind!r}; use post, get or idle")
        numbers = [int(c) for c in (counts or defaults[kind]).split(",") if c]
        if any(n < 1 for n in numbers):
            raise SystemExit(f"{part}: connection counts must be positive")
        if kind == "idle":
            idle += numbers
        else:
            load += [(kind, n) for n in numbers]
    return Matrix(load, idle)


def check_corpus(size: int = CORPUS_SIZE) -> tuple[list[str], list[str]]:
    """Form bodies for the load: the candidates the calculator accepts, then seeded variants
    (`EXPR+N`) up to `size`, so no answer cache can serve the benchmark from memory; and the
    candidates it rejects."""
    sys.path.insert(0, str(ROOT))
    try:
        from app.calculator import CalcError, evaluate
    except ImportError:  # no calculator to check against: the servers' answers are verified
        return [urlencode({"expr": e}) for e in CORPUS_CANDIDATES], []

    def accepted(expr: str) -> bool:
        try:
            evaluate(expr)
        except CalcError:
            return False
        return True

    kept = [e for e in CORPUS_CANDIDATES if accepted(e)]
    dropped = [e for e in CORPUS_CANDIDATES if e not in kept]
    rng = random.Random(8)  # issue 8; fixed so every run and every server gets the same corpus
    variants: list[str] = []
    while kept and len(kept) + len(variants) < size:
        expr = f"{rng.choice(kept)}+{rng.randint(1, 999_999)}"
        if accepted(expr):
            variants.append(expr)
    return [urlencode({"expr": e}) for e in kept + variants], dropped


def choose_client(wanted: str, core: int | None) -> LoadClient:
    wrk = shutil.which("wrk")
    if wanted == "wrk" and wrk is None:
        raise SystemExit("--client wrk: wrk is not installed (apt-get install wrk)")
    if wrk is not None and wanted in ("auto", "wrk"):
        try:
            out = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
            version = (out.stdout or out.stderr).splitlines()[0].split(" [")[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            version = "wrk"
        return LoadClient("wrk", version, core)
    return LoadClient(
        "asyncio", f"scripts/bench_peers/load_client.py (Python {platform.python_version()})", core
    )


def server_specs(
    modes: list[str], peers: list[str], say: Callable[[str], None]
) -> tuple[list[ServerSpec], dict[str, str]]:
    """The servers to run, and the ones skipped with the reason."""
    sys.path.insert(0, str(ROOT))
    specs: list[ServerSpec] = []
    skipped: dict[str, str] = {}
    for mode in modes:
        module = MODES[mode]
        if not _importable(module):
            skipped[mode] = f"module {module} not found"
            say(f"skipping mode {mode}: module {module} not found")
            continue
        # Every mode takes --keepalive-timeout (the drivers' contract); the peers' apps have long
        # idle timeouts built in.
        idle_args = ["--keepalive-timeout", IDLE_KEEPALIVE]
        # The peers run with their access logs off; so does ours, for a like-for-like figure.
        argv = [sys.executable, "-m", module, *(["--no-access-log"] if mode == "asyncio" else [])]
        specs.append(ServerSpec(mode, "mode", argv, idle_args))
    for peer in peers:
        script, needs = PEERS[peer]
        missing = [m for m in needs if not _importable(m)]
        if missing:
            reason = f"not installed: {', '.join(missing)} (pip install -e '.[bench]')"
            skipped[peer] = reason
            say(f"skipping peer {peer}: {reason}")
            continue
        specs.append(ServerSpec(peer, "peer", [sys.executable, str(PEERS_DIR / script)]))
    return specs, skipped


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken install
        return False


# ----------------------------------------------------------------------------------------------
# Progress display (rich when installed, plain lines otherwise)


class Display:
    def __init__(self, total: int, use_rich: bool) -> None:
        self.total = total
        self.done = 0
        self._progress: Any = None
        self._task: Any = None
        if use_rich:
            try:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    SpinnerColumn,
                    TextColumn,
                    TimeElapsedColumn,
                    TimeRemainingColumn,
                )
            except ImportError:
                return
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )

    def __enter__(self) -> Display:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task("starting", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def status(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)
        else:
            print(f"[{self.done}/{self.total}] {text} ...", flush=True)

    def advance(self) -> None:
        self.done += 1
        if self._progress is not None:
            self._progress.advance(self._task)

    def say(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, flush=True)


# ----------------------------------------------------------------------------------------------
# Aggregation


LOAD_METRICS = (
    "rps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "cpu_per_1k",
    "error_total",
    "rss_kb",
)
IDLE_METRICS = (
    "held",
    "still_open",
    "rss_per_conn_bytes",
    "rss_per_thread_bytes",
    "threads_held",
    "fresh_p50_ms",
    "fresh_p99_ms",
    "fresh_max_ms",
    "fresh_failures",
)


def aggregate(runs: list[dict[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    good = [r for r in runs if "error" not in r]
    summary: dict[str, Any] = {"ok_runs": len(good), "median": {}, "min": {}, "max": {}}
    for metric in metrics:
        values = [r[metric] for r in good if r.get(metric) is not None]
        if values:
            summary["median"][metric] = statistics.median(values)
            summary["min"][metric] = min(values)
            summary["max"][metric] = max(values)
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        summary["errors"] = errors
    return summary


def load_point(results: dict[str, Any], kind: str, conns: int, name: str) -> dict[str, Any] | None:
    for entry in results["load"]:
        if (entry["scenario"], entry["connections"], entry["server"]) == (kind, conns, name):
            found: dict[str, Any] = entry
            return found
    return None


def idle_point(results: dict[str, Any], conns: int, name: str) -> dict[str, Any] | None:
    for entry in results["idle"]:
        if (entry["connections"], entry["server"]) == (conns, name):
            found: dict[str, Any] = entry
            return found
    return None


def median_of(entry: dict[str, Any] | None, metric: str) -> float | None:
    if entry is None:
        return None
    value = entry["median"].get(metric)
    return None if value is None else float(value)


def compute_ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    ratios = []
    points = sorted(
        {(e["scenario"], e["connections"]) for e in results["load"]},
        key=lambda p: (LOAD_KINDS.index(p[0]), p[1]),
    )
    for kind, conns in points:
        ours = median_of(load_point(results, kind, conns, "asyncio"), "rps")
        row: dict[str, Any] = {"scenario": kind, "connections": conns, "asyncio_rps": ours}
        our_entry = load_point(results, kind, conns, "asyncio")
        for peer in PEERS:
            their_entry = load_point(results, kind, conns, peer)
            theirs = median_of(their_entry, "rps")
            row[f"{peer}_rps"] = theirs
            row[f"vs_{peer}"] = round(ours / theirs, 3) if ours and theirs else None
            row[f"vs_{peer}_paired"] = _paired_ratio(our_entry, their_entry, "rps")
            # CPU per request is steadier than req/s on a busy machine: theirs over ours.
            cpu_ratio = _paired_ratio(their_entry, our_entry, "cpu_per_1k")
            row[f"cpu_vs_{peer}"] = cpu_ratio
        ratios.append(row)
    return ratios


def _paired_text(ours: dict[str, Any] | None, theirs: dict[str, Any] | None) -> str:
    paired = _paired_ratio(ours, theirs, "rps")
    if paired is None or ours is None or ours["ok_runs"] < 2:
        return ""
    return f" (paired {paired:.2f}x)"


def _paired_ratio(
    ours: dict[str, Any] | None, theirs: dict[str, Any] | None, metric: str
) -> float | None:
    """Median over runs of ours/theirs, pairing run i with run i: the runs of a point are
    interleaved, so each pair ran back to back under the same background load."""
    if ours is None or theirs is None:
        return None
    pairs = [
        a[metric] / b[metric]
        for a, b in zip(ours["runs"], theirs["runs"], strict=False)
        if "error" not in a and "error" not in b and a.get(metric) and b.get(metric)
    ]
    return round(statistics.median(pairs), 3) if pairs else None


def evaluate_goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals for the asyncio mode, checked against this run's medians."""
    goals: list[dict[str, Any]] = []

    def add(goal: str, measured: str | None, met: bool | None) -> None:
        goals.append({"goal": goal, "measured": measured or "not measured", "met": met})

    ours = median_of(load_point(results, "post", 64, "asyncio"), "rps")
    for peer, factor, text in (
        ("uvicorn", 2.0, "at least 2x uvicorn"),
        ("raw", 0.5, "at least half the raw-Protocol ceiling"),
    ):
        theirs = median_of(load_point(results, "post", 64, peer), "rps")
        if ours and theirs:
            add(
                f"POST /calculate, 64 connections: {text}",
                f"{ours:,.0f} vs {theirs:,.0f} req/s = {ours / theirs:.2f}x"
                + _paired_text(
                    load_point(results, "post", 64, "asyncio"),
                    load_point(results, "post", 64, peer),
                ),
                ours >= factor * theirs,
            )
        else:
            add(f"POST /calculate, 64 connections: {text}", None, None)
    for kind in LOAD_KINDS:
        p99 = median_of(load_point(results, kind, 512, "asyncio"), "p99_ms")
        add(
            f"{kind.upper()} at 512 connections: p99 under 30 ms",
            None if p99 is None else f"{p99:.1f} ms",
            None if p99 is None else p99 < 30,
        )
    entry = idle_point(results, 10000, "asyncio")
    per_conn = median_of(entry, "rss_per_conn_bytes")
    held = median_of(entry, "held")
    add(
        "10,000 idle keep-alive connections held, under 8 KiB RSS each",
        None if per_conn is None else f"{held or 0:,.0f} held, {per_conn:,.0f} bytes each",
        None if per_conn is None else (per_conn < 8192 and held == 10000),
    )
    fresh = median_of(entry, "fresh_p99_ms")
    add(
        "a fresh client answered in under 10 ms while they are held (p99)",
        None if fresh is None else f"{fresh:.2f} ms",
        None if fresh is None else fresh < 10,
    )
    return goals


# ----------------------------------------------------------------------------------------------
# Reports


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _spread(entry: dict[str, Any], metric: str, digits: int = 0) -> str:
    median = entry["median"].get(metric)
    if median is None:
        return "—"
    low, high = entry["min"][metric], entry["max"][metric]
    if entry["ok_runs"] < 2 or low == high:
        return _num(median, digits)
    return f"{_num(median, digits)} [{_num(low, digits)}–{_num(high, digits)}]"


def render_markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    servers = results["servers"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{meta['command']}` on {meta['date']} "
        f"({meta['machine']}, {meta['cpus']} CPUs, Python {meta['python']}).",
        f"Servers pinned to core {meta['server_core']}, clients to core {meta['client_core']}."
        if meta["server_core"] is not None
        else "Not pinned (fewer than two cores or no taskset).",
        f"Load generator: {meta['client']}. Each figure is the median of {meta['runs']} "
        f"run{'s' if meta['runs'] > 1 else ''} of "
        f"{meta['duration']:g} s; the [min–max] spread follows when runs differ.",
        f"POST bodies cycle through {meta['corpus_size']:,} distinct form-encoded expressions "
        "(CORPUS_CANDIDATES in `scripts/bench.py` and seeded `EXPR+N` variants); the raw and "
        "streams peers answer a constant response (the ceilings of a bare asyncio.Protocol and "
        "of a bare start_server streams server).",
        "",
    ]
    if meta["client_kind"] != "wrk":
        lines += [
            "> **Note:** wrk was not available; the built-in Python client saturates before "
            "the fast servers do, so their figures are lower bounds.",
            "",
        ]
    if meta.get("quick"):
        lines += [
            "> **Quick run** (`--quick`): one short run per point, for checking the script; "
            "not for conclusions.",
            "",
        ]
    if meta.get("load_note"):
        lines += [f"> {meta['load_note']}", ""]

    if results["goals"]:
        lines += ["## Goals (issue 8)", "", "| goal | measured | met |", "|---|---|---|"]
        for goal in results["goals"]:
            met = {True: "yes", False: "**no**", None: "—"}[goal["met"]]
            lines.append(f"| {goal['goal']} | {goal['measured']} | {met} |")
        lines.append("")

    charts = [c for c in results.get("charts", [])]
    if charts:
        lines += ["## Charts", ""] + [f"![{c}]({c})" for c in charts] + [""]

    points = sorted(
        {(e["scenario"], e["connections"]) for e in results["load"]},
        key=lambda p: (LOAD_KINDS.index(p[0]), p[1]),
    )
    if points:
        lines += [
            "## Load",
            "",
            "req/s: requests completed per second; p50/p99: latency percentiles as the "
            "client saw them; CPU: server CPU seconds per 1,000 requests; errors: the "
            "client's connect/read/write/timeout errors plus non-2xx answers.",
            "",
        ]
    titles = {
        "post": "POST /calculate (form-encoded, varied expressions)",
        "get": "GET / (the page)",
    }
    for kind, conns in points:
        lines += [
            f"### {titles[kind]}, {conns} connection{'s' if conns > 1 else ''}",
            "",
            "| server | req/s | p50 ms | p99 ms | CPU s / 1k req | errors | RSS MiB |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name in servers:
            entry = load_point(results, kind, conns, name)
            if entry is None:
                continue
            if not entry["ok_runs"]:
                lines.append(
                    f"| {LABELS[name]} | failed: {entry.get('errors', ['?'])[0]} | | | | | |"
                )
                continue
            rss = entry["median"].get("rss_kb")
            lines.append(
                f"| {LABELS[name]} | {_spread(entry, 'rps')} | {_spread(entry, 'p50_ms', 2)} "
                f"| {_spread(entry, 'p99_ms', 2)} | {_spread(entry, 'cpu_per_1k', 3)} "
                f"| {_num(entry['median'].get('error_total'))} "
                f"| {_num(None if rss is None else rss / 1024, 1)} |"
            )
        lines.append("")

    if results["ratios"]:
        lines += [
            "## Ratios (asyncio mode's req/s over the peer's)",
            "",
            "Ratio of the medians; `paired` is the median of run-by-run ratios (run i of each "
            "server ran back to back, so a pair shares the machine's background load). The last "
            "column compares server CPU per request, which noise disturbs least.",
            "",
            "| scenario | connections | asyncio req/s | vs uvicorn | vs aiohttp | vs raw ceiling "
            "| vs streams ceiling | CPU/request: uvicorn's over ours |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in results["ratios"]:
            lines.append(
                f"| {row['scenario'].upper()} | {row['connections']} "
                f"| {_num(row['asyncio_rps'])} | "
                + " | ".join(
                    _ratio_cell(row, p) for p in ("uvicorn", "aiohttp", "raw", "streams"))
                + f" | {_num(row['cpu_vs_uvicorn'], 2)}x |"
            )
        lines.append("")

    levels = sorted({e["connections"] for e in results["idle"]})
    if levels:
        lines += [
            "## Idle keep-alive connections",
            "",
            "A separate client process opens the connections (one `GET /healthz` each, "
            "then silence). RSS/conn: the server's VmRSS growth over the held connections; "
            "fresh p50/p99: a new client's connect + request + answer while they are held; "
            "still open: connections the server had not closed when checked.",
            "",
        ]
    for level in levels:
        lines += [
            f"### {level:,} idle connections",
            "",
            "| server | held | RSS / conn (bytes) | threads | fresh p50 ms | fresh p99 ms "
            "| still open | notes |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for name in servers:
            entry = idle_point(results, level, name)
            if entry is None:
                continue
            notes = _idle_notes(entry)
            if not entry["ok_runs"]:
                lines.append(f"| {LABELS[name]} | — | — | — | — | — | — | {notes} |")
                continue
            lines.append(
                f"| {LABELS[name]} | {_num(entry['median'].get('held'))} "
                f"| {_spread(entry, 'rss_per_conn_bytes')} "
                f"| {_num(entry['median'].get('threads_held'))} "
                f"| {_spread(entry, 'fresh_p50_ms', 2)} | {_spread(entry, 'fresh_p99_ms', 2)} "
                f"| {_num(entry['median'].get('still_open'))} | {notes} |"
            )
        lines.append("")

    skipped = results.get("skipped", {})
    if skipped:
        lines += ["## Skipped", ""] + [f"- {name}: {why}" for name, why in skipped.items()] + [""]
    lines += [
        "## Reproduce",
        "",
        "```sh",
        meta["command"],
        "```",
        "",
        "Options: `--quick`, `--modes`, `--peers`, `--scenarios 'post:1,64;get:64;idle:1000'`, "
        "`--duration`, `--runs`, `--client auto|wrk|asyncio`, `--out`. Raw per-run figures "
        "are in `results.json`.",
        "",
    ]
    return "\n".join(lines)


def _ratio_cell(row: dict[str, Any], peer: str) -> str:
    ratio, paired = row[f"vs_{peer}"], row[f"vs_{peer}_paired"]
    if not ratio:
        return "—"
    if paired is None or paired == ratio:
        return f"{ratio:.2f}x"
    return f"{ratio:.2f}x (paired {paired:.2f}x)"


def _short(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _idle_notes(entry: dict[str, Any]) -> str:
    notes: list[str] = []
    for run in entry["runs"]:
        if run.get("open_errors"):
            text = ", ".join(f"{k}: {v:,}" for k, v in sorted(run["open_errors"].items()))
            notes.append(f"refused/failed — {text}")
        for key in ("error", "note"):
            if run.get(key):
                notes.append(str(run[key]))
        if run.get("fresh_failures"):
            notes.append(f"{run['fresh_failures']} fresh clients failed")
        if run.get("server_alive") is False:
            notes.append("server died")
    unique = list(dict.fromkeys(notes))
    per_thread = entry["median"].get("rss_per_thread_bytes")
    if per_thread and entry["median"].get("threads_held", 0) > 10:
        unique.insert(0, f"{per_thread:,.0f} bytes per thread")
    return "; ".join(unique).replace("|", "/")[:300]


def render_charts(results: dict[str, Any], out: Path) -> list[str]:
    """PNG charts via matplotlib (Agg); returns the file names, [] when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    names = [n for n in results["servers"] if results["servers"][n].get("ran")]
    written: list[str] = []
    points = sorted(
        {(e["scenario"], e["connections"]) for e in results["load"]},
        key=lambda p: (LOAD_KINDS.index(p[0]), p[1]),
    )

    def bars(
        ax: Any,
        groups: list[str],
        lookup: Callable[[int, str], dict[str, Any] | None],
        metric: str,
        scale: float = 1.0,
        log: bool = False,
    ) -> None:
        width = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            xs, ys, lo, hi = [], [], [], []
            for g in range(len(groups)):
                entry = lookup(g, name)
                value = median_of(entry, metric)
                if entry is None or value is None or (log and value <= 0):
                    continue
                xs.append(g + (i - (len(names) - 1) / 2) * width)
                ys.append(value * scale)
                lo.append((value - entry["min"][metric]) * scale)
                hi.append((entry["max"][metric] - value) * scale)
            if xs:
                drawn = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=LABELS[name])
                ax.bar_label(
                    drawn, labels=[_short(y) for y in ys], fontsize=6, rotation=90, padding=2
                )
        if log:
            ax.set_yscale("log")
        ax.margins(y=0.15)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups)
        ax.grid(axis="y", alpha=0.3)

    if points:
        groups = [f"{k.upper()} x{c}" for k, c in points]

        def load_lookup(g: int, name: str) -> dict[str, Any] | None:
            return load_point(results, points[g][0], points[g][1], name)

        for filename, metric, title, ylabel, log in (
            ("throughput.png", "rps", "Requests per second (median, min–max)", "req/s", False),
            ("latency_p99.png", "p99_ms", "p99 latency", "ms (log scale)", True),
            (
                "cpu_per_1k.png",
                "cpu_per_1k",
                "Server CPU seconds per 1,000 requests",
                "CPU s",
                False,
            ),
        ):
            fig, ax = plt.subplots(figsize=(12, 5.5))
            bars(ax, groups, load_lookup, metric, log=log)
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            # Below the axes: inside, it hid the tallest bars' labels.
            fig.legend(*ax.get_legend_handles_labels(), fontsize=8, ncol=5, loc="lower center")
            fig.tight_layout(rect=(0, 0.09, 1, 1))
            fig.savefig(out / filename, dpi=110)
            plt.close(fig)
            written.append(filename)

    levels = sorted({e["connections"] for e in results["idle"]})
    if levels:
        groups = [f"{n:,} idle" for n in levels]

        def idle_lookup(g: int, name: str) -> dict[str, Any] | None:
            return idle_point(results, levels[g], name)

        fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 9))
        bars(top, groups, idle_lookup, "rss_per_conn_bytes", 1 / 1024, log=True)
        top.set_title("Server RSS per idle keep-alive connection")
        top.set_ylabel("KiB per connection (log scale)")
        fig.legend(*top.get_legend_handles_labels(), fontsize=8, ncol=5, loc="lower center")
        bars(bottom, groups, idle_lookup, "fresh_p99_ms", log=True)
        bottom.set_title("Fresh client latency (p99) while the idle connections are held")
        bottom.set_ylabel("ms (log scale)")
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        fig.savefig(out / "idle.png", dpi=110)
        plt.close(fig)
        written.append("idle.png")
    return written


# ----------------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the five modes against uvicorn, aiohttp and a raw-Protocol ceiling.",
        epilog=f"Full matrix: {FULL_MATRIX!r}; --quick: {QUICK_MATRIX!r}.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 run x 2 s over a reduced matrix (under 2 minutes)"
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated, from {', '.join(MODES)} ('' for none)",
    )
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated, from {', '.join(PEERS)} ('' for none)",
    )
    parser.add_argument(
        "--scenarios",
        default=None,
        help="e.g. 'post:1,64,512;get:64;idle:1000,10000' (default: the matrix)",
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per load run (default 5, quick 2)"
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="runs per point (default 3, quick 1)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds of unmeasured load before a server's first run at a point "
        "(default 1, quick 0.5)",
    )
    parser.add_argument(
        "--fresh-samples",
        type=int,
        default=None,
        help=f"fresh-client requests per idle point (default {FRESH_SAMPLES})",
    )
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "asyncio"),
        default="auto",
        help="load generator (auto: wrk when installed)",
    )
    parser.add_argument(
        "--cores",
        default="0,1",
        help="SERVER_CORE,CLIENT_CORE for taskset, or 'none' (default 0,1)",
    )
    parser.add_argument("--no-progress", action="store_true", help="plain lines, no rich display")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default docs/benchmarks; quick: test-artifacts/bench-quick)",
    )
    args = parser.parse_args(argv)
    args.modes = _names(args.modes, MODES, "mode")
    args.peers = _names(args.peers, PEERS, "peer")
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    return args


def _names(text: str, known: dict[str, Any], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return names


def choose_cores(text: str) -> tuple[int | None, int | None]:
    if text == "none":
        return None, None
    server_core, client_core = (int(c) for c in text.split(","))
    available = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    if (
        shutil.which("taskset") is None
        or not {server_core, client_core} <= available
        or server_core == client_core
    ):
        return None, None
    return server_core, client_core


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_as_keyboard() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so the `finally` blocks stop every child."""
    previous = {
        sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    quick = args.quick
    matrix = parse_matrix(args.scenarios or (QUICK_MATRIX if quick else FULL_MATRIX))
    runs = args.runs or (1 if quick else 3)
    duration = args.duration or (2.0 if quick else 5.0)
    warmup = args.warmup if args.warmup is not None else (0.5 if quick else 1.0)
    fresh_samples = args.fresh_samples or (20 if quick else FRESH_SAMPLES)
    out: Path = args.out or (ROOT / ("test-artifacts/bench-quick" if quick else "docs/benchmarks"))
    cores = choose_cores(args.cores)
    server_core, client_core = cores
    if client_core is not None:
        os.sched_setaffinity(0, {client_core})  # this script is a client too
    nofile = raise_nofile()
    client = choose_client(args.client, client_core)
    display_lines: list[str] = []

    def early_say(text: str) -> None:
        display_lines.append(text)
        print(text, flush=True)

    if server_core is None:
        early_say("not pinning: need two cores and taskset (figures are less comparable)")
    if client.kind != "wrk":
        early_say("wrk not found: using the built-in asyncio client (slower; lower bounds)")
    if matrix.idle and max(matrix.idle) + 100 > nofile:
        early_say(
            f"warning: descriptor limit {nofile} is below {max(matrix.idle)} idle connections"
        )
    corpus, dropped = check_corpus()
    if dropped:
        early_say(f"corpus: the calculator rejects {', '.join(dropped)}; dropped")
    if not corpus:
        raise SystemExit("no usable corpus expression")
    specs, skipped = server_specs(args.modes, args.peers, early_say)
    if not specs:
        raise SystemExit("nothing to benchmark")

    steps = len(matrix.load) * runs * len(specs) + len(matrix.idle) * runs * len(specs)
    estimate = (
        len(matrix.load) * len(specs) * (runs * (duration + 0.5) + warmup)
        + len(matrix.idle) * len(specs) * runs * 10
    )
    early_say(
        f"{len(specs)} servers, {len(matrix.load)} load points, {len(matrix.idle)} idle points,"
        f" {runs} run(s) each; roughly {estimate / 60:.1f} min; client {client.version}"
    )

    started = time.time()
    children = Children()
    results: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": shlex.join(
                ["python3", "scripts/bench.py", *(sys.argv[1:] if argv is None else argv)]
            ),
            "machine": f"{platform.system()} {platform.release()} {platform.machine()}",
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "client": f"{client.version}, 1 thread" if client.kind == "wrk" else client.version,
            "client_kind": client.kind,
            "server_core": server_core,
            "client_core": client_core,
            "runs": runs,
            "duration": duration,
            "warmup": warmup,
            "quick": quick,
            "nofile_limit": nofile,
            "corpus_size": len(corpus),
            "corpus_dropped": dropped,
            "load_average_start": os.getloadavg(),
            "versions": _versions(),
        },
        "servers": {
            s.name: {
                "label": LABELS[s.name],
                "kind": s.kind,
                "command": shlex.join(
                    ["python", *_relative(s.argv[1:]), "--host", HOST, "--port", "0"]
                ),
                "idle_args": s.idle_args,
            }
            for s in specs
        },
        "skipped": skipped,
        "load": [],
        "idle": [],
    }
    with (
        tempfile.TemporaryDirectory(prefix="calcserve-bench-") as tmp,
        interrupts_as_keyboard(),
        Display(steps, not args.no_progress) as display,
    ):
        workdir = Path(tmp)
        corpus_file = workdir / "corpus.txt"
        corpus_file.write_text("\n".join(corpus) + "\n")
        try:
            if matrix.load:
                _load_phase(
                    children,
                    client,
                    specs,
                    matrix,
                    runs,
                    duration,
                    warmup,
                    cores,
                    workdir,
                    corpus,
                    corpus_file,
                    results,
                    display,
                )
            # Before the idle scenarios: holding 10,000 connections in the thread modes makes
            # thousands of threads runnable at once, and the load average then counts our own.
            results["meta"]["load_average_after_load"] = os.getloadavg()
            for level in matrix.idle:
                for spec in specs:
                    point_runs: list[dict[str, Any]] = []
                    for run in range(runs):
                        display.status(f"idle {level:,}: {spec.name} (run {run + 1}/{runs})")
                        result = run_idle(children, spec, level, cores, workdir, fresh_samples)
                        point_runs.append(result)
                        display.advance()
                        display.say(_describe_idle(spec.name, level, result))
                    results["servers"][spec.name]["ran"] = True
                    results["idle"].append(
                        {
                            "connections": level,
                            "server": spec.name,
                            "runs": point_runs,
                            **aggregate(point_runs, IDLE_METRICS),
                        }
                    )
        except KeyboardInterrupt:
            display.say("interrupted: stopping every server and client; no results written")
            children.stop_all()
            return 130
        finally:
            children.stop_all()
    results["meta"]["elapsed_s"] = round(time.time() - started, 1)
    results["meta"]["child_pids"] = children.history
    results["meta"]["load_average_end"] = os.getloadavg()
    # Outside load shows before the run and, for the load figures, at the end of the load phase
    # (the idle phase's thread storms are the benchmark's own: see load_average_after_load).
    seen = [results["meta"]["load_average_start"][0]]
    if "load_average_after_load" in results["meta"]:
        seen.append(results["meta"]["load_average_after_load"][0])
    busy = max(seen)
    if busy > 1.5:
        results["meta"]["load_note"] = (
            f"The machine was busy (1-minute load average up to {busy:.1f} on "
            f"{os.cpu_count()} CPUs) during this run: figures are noisy."
        )
    results["ratios"] = compute_ratios(results)
    results["goals"] = evaluate_goals(results)
    out.mkdir(parents=True, exist_ok=True)
    results["charts"] = render_charts(results, out)
    if not results["charts"]:
        print("charts skipped: matplotlib is not installed (pip install -e '.[bench]')")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "README.md").write_text(render_markdown(results))
    print(
        f"wrote {out / 'results.json'}, {out / 'README.md'}"
        + (f" and {len(results['charts'])} charts" if results["charts"] else "")
        + f" in {results['meta']['elapsed_s']:.0f} s"
    )
    for goal in results["goals"]:
        if goal["met"] is not None:
            print(
                f"  goal {'met' if goal['met'] else 'MISSED'}: {goal['goal']}: {goal['measured']}"
            )
    return 0


def _load_phase(
    children: Children,
    client: LoadClient,
    specs: list[ServerSpec],
    matrix: Matrix,
    runs: int,
    duration: float,
    warmup: float,
    cores: tuple[int | None, int | None],
    workdir: Path,
    corpus: list[str],
    corpus_file: Path,
    results: dict[str, Any],
    display: Display,
) -> None:
    """All load points, with every server running at once and the runs interleaved."""
    server_core = cores[0]
    servers: dict[str, Server] = {}
    failed: dict[str, str] = {}
    for spec in specs:
        display.status(f"starting {spec.name}")
        try:
            server = start_server(children, spec, server_core, workdir)
            check = verify(server, corpus[:60])
        except (StartError, OSError, ValueError) as exc:
            failed[spec.name] = str(exc)
            display.say(f"{spec.name}: cannot benchmark: {exc}")
            continue
        results["servers"][spec.name]["verify"] = check
        if not check["ok"]:
            display.say(f"{spec.name}: WARNING: {'; '.join(check['problems'][:3])}")
        servers[spec.name] = server
        results["servers"][spec.name]["ran"] = True
    for kind, conns in matrix.load:
        point: dict[str, list[dict[str, Any]]] = {spec.name: [] for spec in specs}
        for run in range(runs):
            for spec in specs:
                display.status(f"{kind.upper()} x{conns}: {spec.name} (run {run + 1}/{runs})")
                current = servers.get(spec.name)
                if current is None:
                    result: dict[str, Any] = {"error": failed.get(spec.name, "not started")}
                else:
                    server = current
                    if not server.alive():  # crashed earlier: note it and start a fresh one
                        display.say(
                            f"{spec.name} had exited ({server.proc.returncode}); "
                            f"restarting. stderr: {server.stderr_tail(300)}"
                        )
                        children.stop(server.proc)
                        try:
                            server = servers[spec.name] = start_server(
                                children, spec, server_core, workdir
                            )
                        except StartError as exc:
                            result = {"error": str(exc)}
                            point[spec.name].append(result)
                            display.advance()
                            continue
                    if run == 0 and warmup > 0:
                        run_load(children, client, server, kind, conns, warmup, corpus_file)
                    result = run_load(children, client, server, kind, conns, duration, corpus_file)
                point[spec.name].append(result)
                display.advance()
                display.say(_describe_load(spec.name, kind, conns, result))
        for spec in specs:
            results["load"].append(
                {
                    "scenario": kind,
                    "connections": conns,
                    "server": spec.name,
                    "runs": point[spec.name],
                    **aggregate(point[spec.name], LOAD_METRICS),
                }
            )
    for name, server in servers.items():
        tail = server.stderr_tail(1500).strip()
        code = children.stop(server.proc)
        results["servers"][name]["exit_status"] = code
        if tail:
            results["servers"][name]["stderr_tail"] = tail


def _describe_load(name: str, kind: str, conns: int, r: dict[str, Any]) -> str:
    if "error" in r and "rps" not in r:
        return f"{kind.upper():4} x{conns:<4} {name:12} ERROR {r['error']}"
    errors = f"  errors {r['error_total']:,}" if r["error_total"] else ""
    return (
        f"{kind.upper():4} x{conns:<4} {name:12} {r['rps']:>9,.0f} req/s  p50 {r['p50_ms']:6.2f}"
        f" ms  p99 {r['p99_ms']:7.2f} ms  cpu {r['cpu_per_1k']:.3f} s/1k{errors}"
    )


def _describe_idle(name: str, level: int, r: dict[str, Any]) -> str:
    if "error" in r and "held" not in r:
        return f"idle {level:<6,} {name:12} ERROR {r['error']}"
    per_conn = r.get("rss_per_conn_bytes")
    fresh = r.get("fresh_p99_ms")
    text = (
        f"idle {level:<6,} {name:12} held {r['held']:,}"
        + (f"  {per_conn:,} B/conn" if per_conn is not None else "")
        + (f"  threads {r['threads_held']:,}" if r.get("threads_held") else "")
        + (f"  fresh p99 {fresh:.2f} ms" if fresh is not None else "")
    )
    if r.get("open_errors"):
        text += f"  refused: {r['open_errors']}"
    if r.get("error"):
        text += f"  ERROR {r['error']}"
    if r.get("note"):
        text += f"  ({r['note']})"
    return text


def _relative(argv: list[str]) -> list[str]:
    return [a.removeprefix(str(ROOT) + os.sep) for a in argv]


def _versions() -> dict[str, str]:
    from importlib import metadata

    found: dict[str, str] = {}
    for package in ("uvloop", "uvicorn", "httptools", "aiohttp"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


if __name__ == "__main__":
    sys.exit(main())
