"""The command line, and one run from the options to the written results.

A run: pin this process to the client core, check the corpus, pick the servers (skipping those
not installed) and the load generator, then the phases in order (load, idle, fairness), each
bounded in time; then aggregate, write results.json, README.md and the charts. SIGTERM and SIGHUP
unwind like Ctrl-C: every child is stopped and nothing is written (exit status 130).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchkit import HOST, ROOT
from benchkit.charts import render_charts
from benchkit.fairness import ATTACKS, VARIANTS, WARMUP, choose_expressions, fairness_phase
from benchkit.load import check_corpus, choose_client
from benchkit.markdown import render_markdown
from benchkit.progress import Display
from benchkit.report import compute_ratios, evaluate_goals
from benchkit.scenarios import (
    FRESH_SAMPLES,
    FULL_MATRIX,
    QUICK_MATRIX,
    idle_phase,
    load_phase,
    parse_matrix,
)
from benchkit.servers import LABELS, MODES, PEERS, Children, raise_nofile, server_specs


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the five modes against uvicorn, aiohttp and a raw-Protocol ceiling.",
        epilog=f"Full matrix: {FULL_MATRIX!r}; --quick: {QUICK_MATRIX!r}.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 run x 2 s over a reduced matrix (about 2 minutes)"
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
        help="e.g. 'post:1,64,512;get:64;idle:1000,10000;fair:64' (default: the matrix)",
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
    parser.add_argument(
        "--fair-attack",
        choices=ATTACKS,
        default="admissible",
        help="the fairness attacker's expression: admissible (the longest sum of sin(7) inside "
        "the work budget; default) or issue (3^0.7 summed 1,600 times, past the budget now)",
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

    # The fairness scenario measures the five modes (before and after their pool), no peer.
    fair_specs = [s for s in specs if s.kind == "mode"]
    if matrix.fair and not fair_specs:
        early_say("fairness scenario skipped: it measures the modes, and none is selected")
    attack = costly = None
    if matrix.fair and fair_specs:
        attack, costly = choose_expressions(args.fair_attack)
        early_say(
            f"fairness: the attacker posts {attack.summary} ({attack.cpu_ms} ms of CPU here, "
            f"{attack.outcome}); the bystander's costly question {costly.summary} "
            f"({costly.cpu_ms} ms)"
        )
    fair_runs = len(matrix.fair) * len(fair_specs) * len(VARIANTS) * runs if attack else 0
    steps = len(matrix.load) * runs * len(specs) + len(matrix.idle) * runs * len(specs) + fair_runs
    estimate = (
        len(matrix.load) * len(specs) * (runs * (duration + 0.5) + warmup)
        + len(matrix.idle) * len(specs) * runs * 10
        + fair_runs * (duration + WARMUP + 5)
    )
    early_say(
        f"{len(specs)} servers, {len(matrix.load)} load points, {len(matrix.idle)} idle points,"
        f" {len(matrix.fair) if attack else 0} fairness points,"
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
        "fairness": [],
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
                load_phase(
                    children, client, specs, matrix, runs, duration, warmup, cores, workdir,
                    corpus, corpus_file, results, display,
                )  # fmt: skip
            # Before the other scenarios: holding 10,000 connections in the thread modes makes
            # thousands of threads runnable at once, and the load average then counts our own;
            # the fairness scenario loads both cores by design.
            results["meta"]["load_average_after_load"] = os.getloadavg()
            if attack is not None and costly is not None:
                fairness_phase(
                    children, fair_specs, matrix.fair, runs, duration, cores, workdir,
                    attack, costly, results, display,
                )  # fmt: skip
            idle_phase(
                children, specs, matrix.idle, runs, cores, workdir, fresh_samples, results,
                display,
            )  # fmt: skip
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


def _relative(argv: list[str]) -> list[str]:
    return [a.removeprefix(str(ROOT) + os.sep) for a in argv]


def _versions() -> dict[str, str]:
    from importlib import metadata

    found: dict[str, str] = {}
    for package in ("uvloop", "uvicorn", "httptools", "aiohttp"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found

