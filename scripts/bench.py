#!/usr/bin/env python3
"""Benchmark the five server modes side by side with uvicorn, aiohttp and a raw-Protocol ceiling.

    python3 scripts/bench.py                    # the full matrix, 3 runs x 5 s (about 30 minutes)
    python3 scripts/bench.py --quick            # 1 run x 2 s, reduced matrix (about 2 minutes)
    python3 scripts/bench.py --modes asyncio --peers uvicorn,raw --scenarios post:64
    python3 scripts/bench.py --scenarios fair:64 --modes asyncio,select --runs 1

What it measures, per server:
- load: `POST /calculate` (form-encoded, keep-alive, a corpus of varied expressions) and `GET /`
  at 1, 64 and 512 connections: requests/s, p50 and p99 latency, server CPU seconds per 1,000
  requests (utime + stime from /proc/PID/stat across the run), errors as the client saw them.
- idle: 1,000 / 5,000 / 10,000 idle keep-alive connections (each has made one request), held by a
  separate client process: server RSS per held connection (VmRSS delta), thread count, and the
  latency of fresh clients (connect, request, answer) while they are held. A fresh server process
  per point, so the RSS baseline is clean.
- fairness (issue 13): an attacker on 64 and 512 keep-alive connections posting costly
  expressions, a bystander from another address asking cheap and costly questions; each mode
  before (`--calc-workers 0`) and after its calculation pool: the bystander's p50/p99, the
  attacker's rate and share, what was shed, and whether every request got an answer.

Strategy: each server runs pinned to one core and every client (wrk, the idle holder, the
fairness peers, this script) to the other, so the server gets a whole core and the figures are
comparable on a 2-core machine. Points interleave the servers (run 1 of every server, then run 2,
...) so drift in the machine's background load spreads over all of them instead of favouring
whoever ran first. Each point is repeated `--runs` times; tables give the median and the
[min-max] spread.

Load generator: wrk (Debian's package) with scripts/bench_post.lua, one thread; without wrk, the
built-in asyncio client (scripts/bench_peers/load_client.py), which is slower than the fast servers
and says so in the report. Peers whose packages are missing (the `bench` extra) are skipped with a
message; rich (progress) and matplotlib (charts) are optional too.

Everything talks to 127.0.0.1 (and 127.0.0.2, the fairness bystander) only; every step is bounded
in time; all child processes are stopped on exit, on Ctrl-C and on SIGTERM (and die with this
script via PR_SET_PDEATHSIG on Linux). Outputs (default docs/benchmarks/, or
test-artifacts/bench-quick/ with --quick): results.json, README.md (tables, ratios, goals) and PNG
charts.

This file is the entry point; the machinery is the package scripts/benchkit/ (its __init__ maps
the modules).
"""

from __future__ import annotations

import sys
from pathlib import Path

_SCRIPTS = str(Path(__file__).resolve().parent)
if _SCRIPTS not in sys.path:  # loaded by path (runpy, importlib), not run as a script
    sys.path.insert(0, _SCRIPTS)

from benchkit.cli import main  # noqa: E402  (after the path set-up: scripts/ is not a package)
from benchkit.load import CORPUS_CANDIDATES, check_corpus  # noqa: E402

# scripts/bench_ops.py loads this file and takes the POST corpus from it.
__all__ = ["CORPUS_CANDIDATES", "check_corpus", "main"]  # for bench_calculator, bench_ops

if __name__ == "__main__":
    sys.exit(main())
