#!/usr/bin/env python3
"""Throughput of `--workers 2` against 1, and the per-request cost of metrics, with wrk.

    python3 scripts/bench_ops.py                      # workers 1 vs 2, 3 runs x 5 s each
    python3 scripts/bench_ops.py --baseline d61873c   # also: this tree vs the server at a commit
    python3 scripts/bench_ops.py --skip-workers --nginx   # nginx -> instances: Unix vs TCP

Measured like scripts/bench.py: wrk (one thread, 64 keep-alive connections) with
scripts/bench_post.lua, POST /calculate over scripts/bench.py's corpus; server CPU is utime+stime
from /proc of every server process (supervisor and workers) across the run.

- workers: nothing is pinned (pinning two workers to one core would measure nothing), so the
  server processes and wrk share the machine's cores; on a 2-core box wrk's own thread takes a
  share of one of them, which caps what two workers can show.
- baseline: the server pinned to core 0 and wrk to core 1 (as scripts/bench.py does), this
  tree against a copy of it whose driver files (BASELINE_FILES) are those of the baseline
  commit, alternating run by run, so the difference is what the driver changes in between cost
  per request (for us: metrics and the /metrics interception).
- nginx: deploy/nginx.conf (as tests/test_ops_nginx.py rewrites it) in front of two instances,
  over Unix sockets (as deployed) or over TCP, alternating run by run; wrk talks to nginx.
  Nothing pinned (nginx's two workers, two instances and wrk share the cores); CPU per request
  is that of the instances and nginx together.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python scripts/bench_ops.py`: for tests.test_ops_nginx
    sys.path.insert(0, str(ROOT))
# The files the ops integration touched; --baseline swaps only these.
BASELINE_FILES = ("app/server.py", "app/config.py", "app/__main__.py")
GET_PATH: str | None = None
LISTENING = re.compile(r"listening on (?:https?://127\.0\.0\.1:(\d+)|unix:(\S+))")


def load_corpus() -> list[str]:
    spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = bench
    spec.loader.exec_module(bench)
    corpus, _dropped = bench.check_corpus()
    return list(corpus)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [pid, *(int(child) for child in f.read().split())]


def start(tree: Path, workers: int, core: int | None,
          extra: Sequence[str] = ()) -> tuple[subprocess.Popen[str], int]:
    """`python -m app` from `tree`; returns it and its port (0 on a Unix socket)."""
    argv = [sys.executable, "-m", "app", "--port", "0", "--no-access-log", *extra]
    if workers > 1:
        argv += ["--workers", str(workers)]
    return start_process(argv, core, cwd=tree)


def start_process(argv: list[str], core: int | None,
                  cwd: Path = ROOT) -> tuple[subprocess.Popen[str], int]:
    """Any server that prints the listening line; pinned to `core` when given."""
    if core is not None:
        argv = ["taskset", "-c", str(core), *argv]
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    assert proc.stdout is not None
    match = LISTENING.search(proc.stdout.readline())
    if match is None:
        proc.kill()
        raise SystemExit(f"{argv}: no listening line")
    return proc, int(match[1] or 0)


def run_wrk(port: int, seconds: float, corpus: Path, core: int | None,
            scheme: str = "http") -> dict[str, float]:
    argv = ["wrk", "-t1", "-c64", f"-d{seconds:g}s", "--latency", "--timeout=5s", "-s",
            str(ROOT / "scripts" / "bench_post.lua"), f"{scheme}://127.0.0.1:{port}", "--",
            "post", str(corpus)]
    if GET_PATH:  # a cheap request: what the driver adds per request shows most
        lua = corpus.with_name("get.lua")
        lua.write_text(f'dofile("{ROOT / "scripts" / "bench_post.lua"}")\n'
                       "local req\nlocal base_init = init\n"  # Host is known only in init
                       f'function init(args) base_init(args); req = wrk.format("GET", "{GET_PATH}")'
                       " end\nfunction request() return req end\n")
        argv[argv.index("-s") + 1] = str(lua)
    if core is not None:
        argv = ["taskset", "-c", str(core), *argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH_JSON "))
    summary = json.loads(line[len("BENCH_JSON "):])
    errors = sum(summary["errors"].values())
    return {"requests": summary["requests"], "seconds": summary["duration_us"] / 1e6,
            "errors": errors, "p99_ms": summary["latency_us"]["p99"] / 1000}


def measure(tree: Path, workers: int, seconds: float, corpus: Path,
            pin: tuple[int, int] | None) -> dict[str, float]:
    proc, port = start(tree, workers, pin[0] if pin else None)
    try:
        return load(proc, port, seconds, corpus, pin[1] if pin else None)
    finally:
        proc.terminate()
        proc.wait(30)


def load(proc: subprocess.Popen[str], port: int, seconds: float, corpus: Path,
         client_core: int | None, scheme: str = "http",
         pids: Sequence[int] = ()) -> dict[str, float]:
    """wrk against `port` (after a warm-up); CPU of `proc`, its children and `pids` (that of
    `pids` alone also as `others_us_per_req`)."""
    time.sleep(0.5)
    own = server_pids(proc.pid)
    run_wrk(port, 1.0, corpus, client_core, scheme)  # warm-up
    before = [sum(cpu_seconds(p) for p in group) for group in (own, pids)]
    result = run_wrk(port, seconds, corpus, client_core, scheme)
    after = [sum(cpu_seconds(p) for p in group) for group in (own, pids)]
    rps = result["requests"] / result["seconds"]
    per_request = [(b - a) / result["requests"] * 1e6 for a, b in zip(before, after, strict=True)]
    return {"rps": rps, "cpu_us_per_req": sum(per_request), "others_us_per_req": per_request[1],
            "errors": result["errors"], "p99_ms": result["p99_ms"]}


def measure_nginx(transport: str, seconds: float, corpus: Path) -> dict[str, float]:
    """deploy/nginx.conf to two instances over `transport` ("unix" or "tcp")."""
    from tests.test_ops_nginx import start_nginx

    with tempfile.TemporaryDirectory() as tmp:
        instances = []
        try:
            for n in (1, 2):
                extra = ["--uds", f"{tmp}/calcserve-{n}.sock"] if transport == "unix" else []
                instances.append(start(ROOT, 1, None, extra))
            addresses = [f"unix:{tmp}/calcserve-{n}.sock" if transport == "unix"
                         else f"127.0.0.1:{port}" for n, (_, port) in enumerate(instances, 1)]
            nginx, nginx_port = start_nginx(Path(tmp), addresses)
            try:
                return load(nginx, nginx_port, seconds, corpus, None,
                            pids=[p for proc, _ in instances for p in server_pids(proc.pid)])
            finally:
                nginx.terminate()
                nginx.wait(10)
        finally:
            for proc, _ in instances:
                proc.terminate()
                proc.wait(30)


def summarize(label: str, runs: list[dict[str, float]]) -> None:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    spread = ", ".join(f"{r['rps']:.0f}" for r in runs)
    print(f"{label:34} {med('rps'):9.0f} req/s  [{spread}]  {med('cpu_us_per_req'):6.1f} us CPU/req"
          f"  p99 {med('p99_ms'):.2f} ms  errors {sum(r['errors'] for r in runs):.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", help="a commit whose server to compare this tree with")
    parser.add_argument("--skip-workers", action="store_true")
    parser.add_argument("--nginx", action="store_true",
                        help="nginx to two instances over Unix sockets against over TCP")
    parser.add_argument("--get", metavar="PATH",
                        help="load GET PATH (e.g. /healthz) instead of POST /calculate")
    args = parser.parse_args()
    global GET_PATH
    GET_PATH = args.get
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(load_corpus()) + "\n")
        if not args.skip_workers:
            results: dict[int, list[dict[str, float]]] = {1: [], 2: []}
            for _ in range(args.runs):
                for workers in (1, 2):
                    results[workers].append(measure(ROOT, workers, args.duration, corpus, None))
            for workers, runs in results.items():
                summarize(f"--workers {workers} (unpinned)", runs)
            ratio = (statistics.median(r["rps"] for r in results[2])
                     / statistics.median(r["rps"] for r in results[1]))
            print(f"workers 2 / workers 1: {ratio:.2f}x req/s", flush=True)
        if args.baseline:
            # This tree's app/, with the driver files as they were at the baseline commit.
            base = Path(tmp) / "baseline"
            shutil.copytree(ROOT / "app", base / "app")
            for name in BASELINE_FILES:
                (base / name).write_bytes(subprocess.run(
                    ["git", "show", f"{args.baseline}:{name}"], cwd=ROOT, capture_output=True,
                    check=True).stdout)
            pairs: dict[str, list[dict[str, float]]] = {"this tree": [], args.baseline: []}
            for _ in range(args.runs):
                pairs["this tree"].append(measure(ROOT, 1, args.duration, corpus, (0, 1)))
                pairs[args.baseline].append(measure(base, 1, args.duration, corpus, (0, 1)))
            for label, runs in pairs.items():
                summarize(f"{label} (pinned server 0, wrk 1)", runs)
        if args.nginx:
            via: dict[str, list[dict[str, float]]] = {"unix": [], "tcp": []}
            for _ in range(args.runs):
                for transport in via:
                    via[transport].append(measure_nginx(transport, args.duration, corpus))
            for transport, runs in via.items():
                summarize(f"nginx -> 2 instances over {transport}", runs)
                print(f"  of which the instances: "
                      f"{statistics.median(r['others_us_per_req'] for r in runs):.1f} us CPU/req",
                      flush=True)
            ratio = (statistics.median(r["rps"] for r in via["unix"])
                     / statistics.median(r["rps"] for r in via["tcp"]))
            print(f"nginx over Unix sockets / over TCP: {ratio:.2f}x req/s", flush=True)


if __name__ == "__main__":
    main()
