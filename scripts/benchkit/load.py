"""Load generation: what the clients send, and the clients that send it.

- The POST corpus: CORPUS_CANDIDATES, checked against app.calculator (any it rejects is dropped
  and reported), then seeded `EXPR+N` variants up to CORPUS_SIZE, so that no answer cache can
  serve the benchmark from memory. Every run and every server gets the same corpus.
- `LoadClient`: wrk (Debian's package) with scripts/bench_post.lua, one thread; without wrk, the
  built-in asyncio client (scripts/bench_peers/load_client.py), which is slower than the fast
  servers (its figures are lower bounds). Both print one `BENCH_JSON {...}` summary line.
- The idle holder (scripts/bench_peers/idle_client.py): a separate process that opens N
  keep-alive connections, makes one request on each and then keeps quiet.

Every client runs pinned to the client core, the other one from the servers'.
"""

from __future__ import annotations

import json
import platform
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from benchkit import HOST, PEERS_DIR, ROOT, SCRIPTS
from benchkit.servers import Children, Server, cpu_seconds, pinned, proc_status

LUA_SCRIPT = SCRIPTS / "bench_post.lua"
# What a LoadClient sends: POST /calculate over the corpus, or GET / (the page).
LOAD_KINDS = ("post", "get")
CLIENT_TIMEOUT = 5.0  # wrk --timeout: a response slower than this counts as a timeout error
IDLE_OPEN_DEADLINE = 120.0  # seconds for the holder to open all its connections
CORPUS_SIZE = 1200  # distinct expressions per run: far more than any sensible answer cache


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


def start_idle_holder(
    children: Children, port: int, count: int, core: int | None
) -> subprocess.Popen[bytes]:
    """Start the idle holder on `count` connections; it reports on stdout, obeys its stdin."""
    argv = [
        sys.executable,
        str(PEERS_DIR / "idle_client.py"),
        "--port",
        str(port),
        "--count",
        str(count),
        "--open-deadline",
        f"{IDLE_OPEN_DEADLINE:g}",
    ]
    return children.spawn(
        pinned(core, argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
