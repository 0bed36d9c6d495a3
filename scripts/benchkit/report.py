"""From runs to findings: medians over the runs of each point, ratios against the peers, and
the issues' goals checked against this run's medians.

Each point of a scenario holds its runs and `aggregate(runs)`: `ok_runs`, and the median, min
and max of each metric over the runs that did not fail. A ratio of medians hides how the runs
paired up, so `_paired_ratio` also gives the median of run-by-run ratios (run i of every server
ran back to back, under the same background load).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from benchkit.load import LOAD_KINDS
from benchkit.servers import PEERS

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
FAIR_METRICS = (
    "cheap_p50_ms",
    "cheap_p99_ms",
    "cheap_max_ms",
    "cheap_alone_p50_ms",
    "cheap_alone_p99_ms",
    "cheap_ok",
    "costly_p50_ms",
    "costly_max_ms",
    "costly_ok",
    "cheap_non_200",
    "costly_non_200",
    "bystander_non_200",
    "attacker_open",
    "attacker_ok_per_s",
    "attacker_answers_per_s",
    "attacker_job_share",
    "attacker_pool_share",
    "pool_busy_share",
    "shed_429",
    "shed_503",
    "refused_422",
    "unanswered",
    "missing_retry_after",
    "rss_growth_kb",
)
# Issue 13's goals for the bystander's cheap p99 (ms) with the pool: mode -> attacker
# connections -> bound. Every other mode: 100 ms with 64 connections.
FAIR_P99_GOALS: dict[str, dict[int, float]] = {"asyncio": {64: 25.0, 512: 50.0}}
FAIR_P99_OTHERS = {64: 100.0}
COSTLY_WITHIN_MS = 1000.0


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


def fair_point(
    results: dict[str, Any], conns: int, name: str, variant: str
) -> dict[str, Any] | None:
    for entry in results.get("fairness", []):
        if (entry["connections"], entry["server"], entry["variant"]) == (conns, name, variant):
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
    """The issues' goals, checked against this run's medians: issue 8's for the asyncio mode
    always, issue 13's (fairness) when the run has fairness points."""
    goals: list[dict[str, Any]] = []

    def add(goal: str, measured: str | None, met: bool | None, issue: int = 8) -> None:
        goals.append(
            {"goal": goal, "measured": measured or "not measured", "met": met, "issue": issue}
        )

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
    if results.get("fairness"):
        _fairness_goals(results, add)
    return goals


def _fairness_goals(results: dict[str, Any], add: Callable[..., None]) -> None:
    """Issue 13: with the pool (`after`), the bystander is served and the attacker answered."""
    names = list(dict.fromkeys(e["server"] for e in results["fairness"]))
    levels = sorted({e["connections"] for e in results["fairness"]})
    for name in names:
        bounds = FAIR_P99_GOALS.get(name, FAIR_P99_OTHERS)
        for conns, bound in bounds.items():
            entry = fair_point(results, conns, name, "after")
            p99 = median_of(entry, "cheap_p99_ms")
            alone = median_of(entry, "cheap_alone_p99_ms")
            before = median_of(fair_point(results, conns, name, "before"), "cheap_p99_ms")
            add(
                f"{name}: the bystander's cheap p99 at most {bound:g} ms with {conns} attacker "
                "connections",
                None if p99 is None else f"{p99:,.1f} ms"
                + ("" if alone is None else f"; {alone:,.1f} ms with no costly question of its "
                   "own in flight")
                + ("" if before is None else f"; before the pool: {before:,.0f} ms"),
                None if p99 is None else p99 <= bound,
                13,
            )
    after = [e for e in results["fairness"] if e["variant"] == "after" and e["ok_runs"]]
    if not after:
        return
    worst = max(after, key=lambda e: e["median"].get("costly_max_ms", float("inf")))
    worst_ms = worst["median"].get("costly_max_ms")
    failed = sum(e["max"].get("costly_non_200", 0) for e in after)
    add(
        f"the bystander's costly question answered within {COSTLY_WITHIN_MS / 1000:g} s while "
        "the attack runs",
        "no answer" if worst_ms is None else
        f"slowest {worst_ms:,.0f} ms ({worst['server']}, {worst['connections']} connections)"
        + (f"; {failed} costly questions not answered 200" if failed else ""),
        worst_ms is not None and worst_ms <= COSTLY_WITHIN_MS and failed == 0,
        13,
    )
    unanswered = sum(e["max"].get("unanswered", 0) for e in after)
    missing = sum(e["max"].get("missing_retry_after", 0) for e in after)
    answers = sum(
        r.get("attacker_answers_per_s", 0) * r.get("window_s", 0)
        for e in after for r in e["runs"] if "error" not in r
    )
    add(
        "every attacker request answered (a result, a 422, or a 429/503 with Retry-After)",
        f"{unanswered} unanswered, {missing} 429/503 without Retry-After, in "
        f"{len(after)} points at {', '.join(map(str, levels))} connections "
        f"(~{answers:,.0f} answers in the windows)",
        unanswered == 0 and missing == 0,
        13,
    )
