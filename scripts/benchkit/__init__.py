"""The machinery behind scripts/bench.py, one concern per module.

    servers    every child process (Children), pinning, /proc readings; the servers measured
               (ServerSpec: the five modes and the peers) and how one is started
    probe      a tiny blocking HTTP client: the pre-run check and fresh-client latency
    load       load generation: the POST corpus, wrk or the built-in client, the idle holder
    scenarios  the matrix (`post:64;get:64;idle:1000;fair:64`), the load and idle phases
    fairness   the fairness phase: an attacker posting costly work, a bystander timing cheap
               and costly questions, each mode before (`--calc-workers 0`) and after the pool
    report     aggregation over runs, ratios against the peers, the issues' goals
    markdown   README.md from results.json
    charts     the PNG charts (matplotlib, optional)
    progress   the progress display (rich, optional)
    cli        the command line and the run from start to results

The one rule: nothing here starts a process except through `servers.Children`, so that every
child is stopped on exit, on Ctrl-C and on SIGTERM (and dies with the benchmark through
PR_SET_PDEATHSIG on Linux). The constants below are the places and the address every module
shares; this file imports nothing of the package, so any module may import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
SCRIPTS: Final = ROOT / "scripts"
PEERS_DIR: Final = SCRIPTS / "bench_peers"
HOST: Final = "127.0.0.1"  # every server listens here, every client but the bystander comes here
