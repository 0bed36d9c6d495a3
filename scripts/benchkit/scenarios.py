"""The scenarios' matrix, and the load and idle phases.

- load (`post:1,64,512`, `get:...`): every server runs at once, pinned to the server core, and
  the runs interleave (run 1 of every server, then run 2, ...), so drift in the machine's
  background load spreads over all of them instead of favouring whoever ran first. The first
  run of a point is preceded by `--warmup` seconds of unmeasured load.
- idle (`idle:1000,...`): a fresh server per point, so the RSS baseline is clean; the idle
  holder (a separate process) holds the connections while this process times fresh clients.
- fairness (`fair:64,512`): benchkit.fairness.

Each function here returns figures or an `{"error": ...}` run: a failing server is a finding,
recorded in its point, never the end of the benchmark.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

from benchkit.load import IDLE_OPEN_DEADLINE, LOAD_KINDS, LoadClient, run_load, start_idle_holder
from benchkit.probe import fresh_latencies, verify
from benchkit.progress import Display
from benchkit.report import IDLE_METRICS, LOAD_METRICS, aggregate
from benchkit.servers import (
    Children,
    Server,
    ServerSpec,
    StartError,
    proc_status,
    read_json_line,
    start_server,
)

SCENARIO_KINDS = (*LOAD_KINDS, "idle", "fair")
FULL_MATRIX = "post:1,64,512;get:1,64,512;idle:1000,5000,10000;fair:64,512"
QUICK_MATRIX = "post:64;get:64;idle:1000;fair:64"
FRESH_SAMPLES = 50  # fresh-client requests measured while the idle connections are held


@dataclass(frozen=True)
class Matrix:
    load: list[tuple[str, int]]  # (kind, connections)
    idle: list[int]
    fair: list[int]  # attacker connections


def parse_matrix(text: str) -> Matrix:
    """`post:1,64,512;get:64;idle:1000;fair:64` (a kind without counts takes the full
    matrix's)."""
    defaults = {
        kind: counts for kind, _, counts in (p.partition(":") for p in FULL_MATRIX.split(";"))
    }
    load: list[tuple[str, int]] = []
    idle: list[int] = []
    fair: list[int] = []
    for part in filter(None, (p.strip() for p in text.replace(" ", ";").split(";"))):
        kind, _, counts = part.partition(":")
        if kind not in SCENARIO_KINDS:
            raise SystemExit(f"unknown scenario {kind!r}; use post, get, idle or fair")
        numbers = [int(c) for c in (counts or defaults[kind]).split(",") if c]
        if any(n < 1 for n in numbers):
            raise SystemExit(f"{part}: connection counts must be positive")
        if kind == "idle":
            idle += numbers
        elif kind == "fair":
            fair += numbers
        else:
            load += [(kind, n) for n in numbers]
    return Matrix(load, idle, fair)


# ----------------------------------------------------------------------------------------------
# Load


def load_phase(
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
                display.say(describe_load(spec.name, kind, conns, result))
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


def describe_load(name: str, kind: str, conns: int, r: dict[str, Any]) -> str:
    if "error" in r and r.get("rps") is None:  # a failed run may carry its keys, unset
        return f"{kind.upper():4} x{conns:<4} {name:12} ERROR {r['error']}"
    errors = f"  errors {r['error_total']:,}" if r["error_total"] else ""
    return (
        f"{kind.upper():4} x{conns:<4} {name:12} {r['rps']:>9,.0f} req/s  p50 {r['p50_ms']:6.2f}"
        f" ms  p99 {r['p99_ms']:7.2f} ms  cpu {r['cpu_per_1k']:.3f} s/1k{errors}"
    )


# ----------------------------------------------------------------------------------------------
# Idle


def idle_phase(
    children: Children,
    specs: list[ServerSpec],
    levels: list[int],
    runs: int,
    cores: tuple[int | None, int | None],
    workdir: Path,
    fresh_samples: int,
    results: dict[str, Any],
    display: Display,
) -> None:
    """All idle points: a fresh server for each run, the runs of a server back to back."""
    for level in levels:
        for spec in specs:
            point_runs: list[dict[str, Any]] = []
            for run in range(runs):
                display.status(f"idle {level:,}: {spec.name} (run {run + 1}/{runs})")
                result = run_idle(children, spec, level, cores, workdir, fresh_samples)
                point_runs.append(result)
                display.advance()
                display.say(describe_idle(spec.name, level, result))
            results["servers"][spec.name]["ran"] = True
            results["idle"].append(
                {
                    "connections": level,
                    "server": spec.name,
                    "runs": point_runs,
                    **aggregate(point_runs, IDLE_METRICS),
                }
            )


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
    holder: Popen[bytes] | None = None
    try:
        # Warm the server (first-request imports, caches) before taking the baseline.
        fresh_latencies(server.port, 10)
        time.sleep(0.3)
        base = proc_status(server.pid)
        holder = start_idle_holder(children, server.port, count, client_core)
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


def describe_idle(name: str, level: int, r: dict[str, Any]) -> str:
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
