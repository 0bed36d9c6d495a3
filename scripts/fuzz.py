#!/usr/bin/env python3
"""Run the fuzz properties of tests/test_fuzz*.py for minutes instead of seconds.

    python scripts/fuzz.py --minutes 10            # protocol and calculator, time split evenly
    python scripts/fuzz.py --minutes 3 --only protocol
    python scripts/fuzz.py --minutes 5 --only wire --mode select   # driver vs core, over sockets

Hypothesis has no time budget of its own, so the run is a loop of batches (each a fresh random
seed of `--batch` examples) until the time is up. Every example run is counted; a batch that
finds a failure prints the shrunk falsifying example and the run goes on with the next batch.
Exit status 1 when anything failed. The figures printed at the end go into docs/hardening.md.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import test_fuzz as props
from tests import test_fuzz_calculator as calc_props
from tests import test_fuzz_wire as wire_props
from tests.support import MODES, running_server

Check = Callable[..., None]


def counted(check: Check, counter: list[int]) -> Check:
    def run(case: Any) -> None:  # one named argument: @given does not accept *args
        counter[0] += 1
        check(case)

    return run


TARGETS: dict[str, list[tuple[str, Any, Check]]] = {
    "protocol": [
        ("protocol whole==split (mutated streams)", props.stream_and_cuts(),
         lambda case: props.check_protocol_split(*case)),
        ("protocol whole==byte-by-byte (valid shapes)",
         st.tuples(st.lists(props.http_request(), min_size=1, max_size=4).map(b"".join),
                   st.booleans()),
         lambda case: props.check_protocol_split(case[0], list(range(1, len(case[0]))), case[1])),
    ],
    "calculator": [
        ("calculator only CalcError", calc_props.calc_text, calc_props.check_calculator),
    ],
}


def run_property(
    name: str, strategy: Any, check: Check, seconds: float, batch: int
) -> dict[str, Any]:
    counter = [0]
    failures: list[str] = []
    batches = 0
    started = time.monotonic()
    deadline = started + seconds
    wrapped = counted(check, counter)
    while time.monotonic() < deadline:
        batches += 1
        test = settings(
            max_examples=batch,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )(given(strategy)(wrapped))
        try:
            test()
        except Exception:  # report every kind of failure and keep fuzzing
            text = traceback.format_exc(limit=3)
            failures.append(text)
            print(f"--- {name}: failure in batch {batches}\n{text}", flush=True)
    return {"name": name, "examples": counter[0], "batches": batches, "failures": len(failures),
            "seconds": time.monotonic() - started}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--only", choices=[*sorted(TARGETS), "wire"], default=None)
    parser.add_argument("--batch", type=int, default=2000, help="examples per hypothesis run")
    parser.add_argument("--mode", choices=MODES, default="asyncio", help="server for --only wire")
    args = parser.parse_args(argv)
    if args.only == "wire":
        with running_server(args.mode, "--header-timeout", "5", "--body-timeout", "5") as server:
            targets = [(f"wire: {args.mode} driver == core", props.http_stream(),
                        lambda data: wire_props.check_wire(server, data))]
            code = run_all(targets, args.minutes, args.batch)
            tracebacks = server.stderr_text().count("Traceback")
            alive = server.proc.poll() is None
        print(f"server {args.mode}: alive={alive}, {tracebacks} tracebacks in its log")
        return code or int(not alive or tracebacks > 0)
    chosen = [t for key, ts in TARGETS.items() if args.only in (None, key) for t in ts]
    return run_all(chosen, args.minutes, args.batch)


def run_all(chosen: list[tuple[str, Any, Check]], minutes: float, batch: int) -> int:
    share = minutes * 60 / len(chosen)
    results = []
    started = time.monotonic()
    for name, strategy, check in chosen:
        print(f"fuzzing: {name} for {share:.0f}s", flush=True)
        results.append(run_property(name, strategy, check, share, batch))
    print(f"\n{'property':48} {'examples':>9} {'ex/s':>7} {'batches':>7} {'failures':>8}")
    for r in results:
        rate = r["examples"] / max(r["seconds"], 1e-9)
        print(
            f"{r['name']:48} {r['examples']:>9} {rate:>7.0f} {r['batches']:>7} {r['failures']:>8}"
        )
    total = sum(r["examples"] for r in results)
    failed = sum(r["failures"] for r in results)
    print(f"total: {total} examples in {time.monotonic() - started:.0f}s, {failed} failing batches")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
