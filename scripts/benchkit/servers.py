"""The processes of a benchmark: every child it starts, and the servers it measures.

`Children` is the one way to start a process here: it remembers each one, so that `stop_all`
stops them whatever happens, and each child dies with the benchmark (PR_SET_PDEATHSIG) even if
the benchmark is SIGKILLed. A server is a `ServerSpec` (one of the five MODES, or one of the
PEERS, skipped with the reason when its packages are missing) started by `start_server`, pinned
to its core with taskset, listening on a port of its choice, which it prints in its listening
line (the contract in DESIGN.md). The /proc readings are what the figures are made of: CPU
seconds (utime + stime), VmRSS and threads, of a server alone or with its children (the
calculation pool's workers).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchkit import HOST, PEERS_DIR, ROOT

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

START_TIMEOUT = 30.0  # seconds for a server to print its listening line (2 busy cores)
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
IDLE_KEEPALIVE = "600"  # seconds; servers must not reap the idle connections mid-measurement
STDERR_CAP = 20 * 1024 * 1024  # a server log past this is truncated between runs


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


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a server's calculation pool, for one)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def tree_rss_kb(pid: int) -> int:
    """VmRSS of `pid` and of its children, in KiB: a server with its pool."""
    total = 0
    for member in (pid, *child_pids(pid)):
        with contextlib.suppress(OSError):
            total += proc_status(member).get("VmRSS", 0)
    return total


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
    children: Children,
    spec: ServerSpec,
    core: int | None,
    workdir: Path,
    *,
    idle: bool = False,
    extra: Sequence[str] = (),
) -> Server:
    """Start a server pinned to `core` (with `extra` arguments) and wait for its listening line.

    Its calculation pool's workers are its children and inherit the pinning: they share the
    server's core, so the pool adds no CPU to what the server is given.
    """
    tag = f"{spec.name}-{time.monotonic_ns()}"
    out_path, err_path = workdir / f"{tag}.out", workdir / f"{tag}.err"
    argv = [
        *spec.argv, "--host", HOST, "--port", "0", *(spec.idle_args if idle else []), *extra
    ]
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
