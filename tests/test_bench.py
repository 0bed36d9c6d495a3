"""scripts/bench.py end to end on a tiny matrix: it runs, stops by itself, cleans up, writes sane
results, and degrades cleanly without wrk or without the optional peers; the fairness scenario
gives coherent figures for each mode before and after its pool.

These check the harness, not the servers' speed: every figure is asserted positive and coherent,
never against a threshold (performance lives in the benchmark itself, not in unit tests).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "scripts" / "bench.py"
RUN_TIMEOUT = 120  # seconds; a tiny matrix takes a few, but CI shares two busy cores
TINY = ["--quick", "--duration", "1", "--runs", "1", "--warmup", "0", "--no-progress"]

# Runs bench.py with some modules made unimportable, as on a machine without the `bench` extra.
HIDING_RUNNER = """
import runpy, sys
HIDDEN = set(sys.argv[1].split(","))
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Hide())
sys.argv = [sys.argv[2], *sys.argv[3:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_bench(out: Path, *args: str, hide: str | None = None) -> subprocess.CompletedProcess[str]:
    if hide is None:
        argv = [sys.executable, str(BENCH)]
    else:
        runner = out.parent / "hiding_runner.py"
        runner.write_text(HIDING_RUNNER)
        argv = [sys.executable, str(runner), hide, str(BENCH)]
    proc = subprocess.run(
        [*argv, *TINY, "--out", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def load_entry(results: dict[str, Any], scenario: str, server: str) -> dict[str, Any]:
    matches = [e for e in results["load"] if (e["scenario"], e["server"]) == (scenario, server)]
    assert len(matches) == 1, results["load"]
    entry: dict[str, Any] = matches[0]
    return entry


def assert_sane_load(entry: dict[str, Any]) -> None:
    assert entry["ok_runs"] == 1, entry
    median = entry["median"]
    assert median["rps"] > 0
    assert 0 < median["p50_ms"] <= median["p99_ms"] <= median["max_ms"]
    assert median["cpu_per_1k"] > 0
    assert median["rss_kb"] > 1024  # a Python process is more than a megabyte
    (run,) = entry["runs"]
    assert run["requests"] > 0 and run["seconds"] > 0.5
    assert run["errors"] == {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}


def assert_children_gone(pids: list[int]) -> None:
    assert pids
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"child {pid} outlived the benchmark"


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install wrk)")
def test_quick_run_with_wrk_writes_json_markdown_and_charts(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    run_bench(out, "--modes", "asyncio", "--peers", "raw", "--scenarios", "post:4")
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["client_kind"] == "wrk"
    assert results["meta"]["corpus_size"] >= 10
    for server in ("asyncio", "raw"):
        assert_sane_load(load_entry(results, "post", server))
        assert results["servers"][server]["exit_status"] == 0  # stopped cleanly by SIGTERM
    assert results["servers"]["asyncio"]["verify"]["ok"], results["servers"]["asyncio"]["verify"]
    (ratio,) = results["ratios"]
    assert ratio["vs_raw"] > 0
    assert_children_gone(results["meta"]["child_pids"])

    markdown = (out / "README.md").read_text()
    assert "### POST /calculate (form-encoded, varied expressions), 4 connections" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| asyncio (python -m app)")]
    assert rows and "—" not in rows[0].split("|")[2], rows  # a req/s figure, not a dash
    assert "| POST | 4 |" in markdown  # the ratios table
    for chart in results["charts"]:
        assert (out / chart).read_bytes().startswith(b"\x89PNG")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert results["charts"] == []
    else:
        assert "throughput.png" in results["charts"]


def test_builtin_client_and_idle_connections_without_the_bench_extra(tmp_path: Path) -> None:
    """No wrk, no rich, no matplotlib, no uvicorn/aiohttp: the script still runs and says so."""
    out = tmp_path / "bench"
    proc = run_bench(
        out,
        "--modes", "asyncio",
        "--peers", "uvicorn,aiohttp",
        "--scenarios", "get:2;idle:40",
        "--client", "asyncio",
        "--fresh-samples", "10",
        hide="uvicorn,aiohttp,rich,matplotlib",
    )  # fmt: skip
    assert "skipping peer uvicorn: not installed" in proc.stdout
    assert "skipping peer aiohttp: not installed" in proc.stdout
    assert "charts skipped: matplotlib is not installed" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert set(results["skipped"]) == {"uvicorn", "aiohttp"}
    assert results["meta"]["client_kind"] == "asyncio"
    assert results["charts"] == []
    assert_sane_load(load_entry(results, "get", "asyncio"))

    (idle,) = results["idle"]
    assert idle["connections"] == 40 and idle["server"] == "asyncio"
    (run,) = idle["runs"]
    assert "error" not in run, run
    assert run["held"] == 40 and run["failed"] == 0
    assert run["still_open"] == 40  # the long keep-alive timeout was passed to the server
    assert run["rss_held_kb"] > 0 and run["rss_base_kb"] > 0
    assert 0 < run["fresh_p50_ms"] <= run["fresh_p99_ms"]
    assert run["fresh_failures"] == 0
    assert_children_gone(results["meta"]["child_pids"])

    markdown = (out / "README.md").read_text()
    assert "built-in Python client" in markdown
    assert "### 40 idle connections" in markdown
    assert "- uvicorn: not installed: uvicorn" in markdown


def fair_entries(results: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    entries = {(e["server"], e["variant"]): e for e in results["fairness"]}
    assert len(entries) == len(results["fairness"]), results["fairness"]
    return entries


def assert_sane_fair_run(run: dict[str, Any], connections: int) -> None:
    assert "error" not in run, run
    assert run["attacker_open"] == connections
    assert run["window_s"] > 0.5
    assert 0 < run["cheap_ok"] <= run["cheap_sent"]
    assert 0 < run["cheap_p50_ms"] <= run["cheap_p99_ms"] <= run["cheap_max_ms"]
    if "cheap_alone_p50_ms" in run:  # some were sent beside none of its costly questions
        assert 0 < run["cheap_alone_p50_ms"] <= run["cheap_alone_p99_ms"] <= run["cheap_max_ms"]
    assert 0 < run["costly_ok"] <= run["costly_sent"]
    assert run["costly_max_ms"] > 0
    # The bystander is answered: a busy pool may shed some of its questions (its cheap ones
    # queue behind its own costly one), never leave one without an answer.
    for others in run["bystander_others"].values():
        assert set(others) <= {"429", "503"}, run["bystander_others"]
    assert run["attacker_answers_per_s"] > 0
    assert sum(run["attacker_statuses"].values()) > 0
    assert run["unanswered"] == 0, run["unanswered_by"]
    assert run["missing_retry_after"] == 0
    assert run["rss_start_kb"] > 1024 and run["rss_end_kb"] > 1024


def test_fairness_scenario_before_and_after_the_pool(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    run_bench(out, "--modes", "asyncio,select", "--peers", "", "--scenarios", "fair:8")
    results = json.loads((out / "results.json").read_text())
    attack = results["meta"]["fairness"]["attack"]
    assert attack["name"] == "admissible" and attack["outcome"] == "result"
    assert 0 < attack["work_units"] <= attack["work_budget"]
    assert attack["cpu_ms"] > 0
    entries = fair_entries(results)
    assert set(entries) == {(m, v) for m in ("asyncio", "select") for v in ("before", "after")}
    for (_server, variant), entry in entries.items():
        assert entry["connections"] == 8 and entry["ok_runs"] == 1, entry
        (run,) = entry["runs"]
        assert_sane_fair_run(run, 8)
        assert run["attacker_ok_per_s"] > 0  # admissible: the attacker gets results
        if variant == "after":
            assert 0 < run["attacker_job_share"] <= 1
    after = entries["asyncio", "after"]["runs"][0]
    assert after["pool_busy_share"] > 0 and 0 <= after["attacker_pool_share"] <= 1
    assert entries["asyncio", "before"]["runs"][0]["pool_jobs"] == 0  # inline: no pool
    goals = [g for g in results["goals"] if g["issue"] == 13]
    assert [g["met"] for g in goals if g["goal"].startswith("every attacker")] == [True]
    assert_children_gone(results["meta"]["child_pids"])

    markdown = (out / "README.md").read_text()
    assert "## Goals (issue 13: fair service)" in markdown
    assert "### 8 attacker connections" in markdown
    for row in ("| asyncio (python -m app) | inline (before) |",
                "| select (legacy) | pool (after) |"):
        assert row in markdown
    if results["charts"]:
        assert results["charts"] == ["fairness.png"]
        assert (out / "fairness.png").read_bytes().startswith(b"\x89PNG")


def test_fairness_with_the_issues_attack_counts_the_refusals(tmp_path: Path) -> None:
    """The issue's `3^0.7` x 1,600 is past the work budget now: every attacker request is a
    422, in both variants, and still an answer."""
    out = tmp_path / "bench"
    run_bench(out, "--modes", "asyncio", "--peers", "", "--scenarios", "fair:4",
              "--fair-attack", "issue")  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["fairness"]["attack"]["outcome"].startswith("refused: too much work")
    for entry in fair_entries(results).values():
        (run,) = entry["runs"]
        assert_sane_fair_run(run, 4)
        assert run["refused_422"] > 0
        assert set(run["attacker_statuses"]) == {"422"}


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_ctrl_c_stops_every_child_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    proc = subprocess.Popen(
        [sys.executable, str(BENCH), *TINY, "--duration", "20", "--out", str(out),
         "--modes", "", "--peers", "raw", "--scenarios", "post:2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # As from a terminal: a suite started in the background by a shell without job control
        # ignores SIGINT, and a child would inherit that (Python then installs no Ctrl-C).
        preexec_fn=_default_sigint,
    )  # fmt: skip
    assert proc.stdout is not None
    output = b""
    children: list[int] = []
    deadline = time.monotonic() + 60
    try:
        # Wait until the load run is under way: the server and the load client are both up.
        while time.monotonic() < deadline and b"POST x2: raw" not in output:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                output += os.read(proc.stdout.fileno(), 65536)
        assert b"POST x2: raw" in output, output
        while time.monotonic() < deadline and len(children) < 2:
            time.sleep(0.2)
            children = _children_of(proc.pid)
        assert len(children) >= 2, (children, output)  # the server and wrk (or the client)
        # The run's blocked and ignored signals, for a failure's message.
        status = [
            line
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
            if line.startswith(("SigBlk", "SigIgn"))
        ]
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    late = time.monotonic() - sent_at
    assert proc.returncode == 130, (status, f"exited {late:.1f} s after SIGINT", output + rest)
    assert b"interrupted" in output + rest
    assert_children_gone(children)
    assert not (out / "results.json").exists()


def test_calculator_bench_over_the_server_corpus_runs_and_reports_a_cost(tmp_path: Path) -> None:
    """scripts/bench_calculator.py --server-corpus takes its corpus from bench.py (it broke
    once when bench.py became a package): it runs, and reports a positive cost per evaluation."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_calculator.py"), "--server-corpus",
         "--runs", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(li for li in proc.stdout.splitlines() if " all " in li and "µs/eval" in li)
    assert float(line.split("all")[1].split("µs")[0]) > 0
