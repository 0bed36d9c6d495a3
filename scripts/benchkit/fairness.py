"""The fairness scenario (issue 13): can one client stall the others with costly calculations?

An attacker (scripts/bench_peers/fair_attacker.py, from 127.0.0.1, at nice 10) keeps N
keep-alive connections busy POSTing one costly expression back to back (form-encoded, as the
page's form sends it: every `(`, `)` and `+` escaped), ignoring Retry-After;
a bystander (scripts/bench_peers/fair_bystander.py, from 127.0.0.2: another client address,
so another fair share) asks `GET /calculate?expr=1%2B2` on a fresh connection every 20 ms and
a costly question (BYSTANDER_COSTLY, `sqrt(2)` summed 800 times) every second, and times every
answer; the cheap answers are also summed apart for the questions sent while none of its
costly ones was in flight (`cheap_alone_*`), since a server may queue a client's cheap work
behind its own costly work. Each mode runs twice per point: `before`, with `--calc-workers 0`
(every calculation on the serving thread, as before the pool), and `after`, with the default
pool. The server is pinned to the server core, and its pool workers inherit that affinity, so
the pool shares the server's one core (the default pool is then one worker); both clients run
on the other core.

One run: start the server; start the attacker and wait until its connections are open; let it
run WARMUP seconds; snapshot (the attacker's counts, `/metrics` of `python -m app`, the RSS of
the server with its pool); run the bystander for `--duration` seconds; snapshot again; stop the
attacker, which waits for the answers to its requests in flight. Rates are over the window
between the snapshots; shed and unanswered counts are the attacker's whole run. An unanswered
request (a reset, a close or a timeout with no response) is a failure of the server, whatever
the mode: every request must get a result, a 422, or a 429/503 with Retry-After.

The attack (`--fair-attack`): `admissible` (the default) is the longest sum of ATTACK_TERM
whose estimated work stays inside ATTACK_SHARE of the calculator's WORK_BUDGET, found with
`app.calculator.estimate_work`: every request is legal and costs several ms of CPU. `issue` is
the expression the issue was filed with, `3^0.7` summed 1,600 times: past WORK_BUDGET under
the new calculator, so it is refused (422 "too much work") once its estimate passes the budget,
part of the way through. The CPU each one costs here is measured and printed in the report.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchkit import HOST, PEERS_DIR, ROOT
from benchkit.probe import http_request
from benchkit.progress import Display
from benchkit.report import FAIR_METRICS, aggregate
from benchkit.servers import (
    Children,
    Server,
    ServerSpec,
    StartError,
    pinned,
    read_json_line,
    start_server,
    tree_rss_kb,
)

VARIANTS = {"before": ["--calc-workers", "0"], "after": []}  # arguments added to the server's
ATTACKS = ("admissible", "issue")
ATTACK_TERM = "sin(7)"  # the most CPU per character and per unit of work of the functions
ATTACK_SHARE = 0.95  # of WORK_BUDGET: just inside it, whatever small drift the estimates have
ISSUE_ATTACK = "+".join(["3^0.7"] * 1600)
BYSTANDER_COSTLY = "+".join(["sqrt(2)"] * 800)
BYSTANDER_SOURCE = "127.0.0.2"
CHEAP_INTERVAL = 0.02  # seconds between the bystander's cheap questions
COSTLY_INTERVAL = 1.0  # seconds between its costly ones
WARMUP = 1.0  # seconds of attack before the window opens (pool started, queues full)
ANSWER_TIMEOUT = 30.0  # seconds either client waits for one answer before it counts a failure
OPEN_DEADLINE = 60.0  # seconds for the attacker to open its connections
ATTACKER_NICE = 10


@dataclass(frozen=True)
class Expression:
    """An expression of the scenario, with what the calculator makes of it here."""

    name: str
    text: str
    summary: str  # e.g. "sin(7) summed 999 times"
    work_units: int | None  # app.calculator.estimate_work's figure
    work_budget: int | None  # app.calculator.WORK_BUDGET: beyond it, "too much work"
    outcome: str  # "result", or the calculator's refusal
    cpu_ms: float | None  # measured: process CPU of one evaluation, median of 5


def choose_expressions(attack: str) -> tuple[Expression, Expression]:
    """The attacker's expression for `attack` and the bystander's costly one, measured."""
    sys.path.insert(0, str(ROOT))
    try:
        from app.calculator import MAX_EXPRESSION_LENGTH, WORK_BUDGET, Result, estimate_work
    except ImportError:  # no calculator here: the issue's figures, unmeasured
        return (
            Expression(attack, ISSUE_ATTACK, "3^0.7 summed 1,600 times", None, None, "?", None),
            Expression(
                "bystander", BYSTANDER_COSTLY, "sqrt(2) summed 800 times", None, None, "?", None
            ),
        )

    def admissible(terms: int) -> bool:
        text = "+".join([ATTACK_TERM] * terms)
        if len(text) > MAX_EXPRESSION_LENGTH:
            return False
        units, outcome = estimate_work(text)
        return isinstance(outcome, Result) and units <= WORK_BUDGET * ATTACK_SHARE

    if attack == "issue":
        text, summary = ISSUE_ATTACK, "3^0.7 summed 1,600 times (the issue's)"
    else:
        low, high = 1, MAX_EXPRESSION_LENGTH // (len(ATTACK_TERM) + 1) + 1
        while low < high:  # the largest admissible number of terms
            middle = (low + high + 1) // 2
            low, high = (middle, high) if admissible(middle) else (low, middle - 1)
        text, summary = "+".join([ATTACK_TERM] * low), f"{ATTACK_TERM} summed {low:,} times"
    costly = _measured("bystander", BYSTANDER_COSTLY, "sqrt(2) summed 800 times")
    return _measured(attack, text, summary), costly


def _measured(name: str, text: str, summary: str) -> Expression:
    from app.calculator import WORK_BUDGET, CalcError, estimate_work, evaluate

    units, _ = estimate_work(text)  # what it would cost in full, past the budget too
    timings = []
    said = "result"
    for _ in range(5):
        started = time.process_time()
        try:
            evaluate(text)
        except CalcError as error:  # what the servers answer: a 422
            said = f"refused: {error}"
        timings.append((time.process_time() - started) * 1000)
    cpu_ms = round(statistics.median(timings), 2)
    return Expression(name, text, summary, units, WORK_BUDGET, said, cpu_ms)


def _described(expression: Expression) -> dict[str, Any]:
    return asdict(expression) | {"text": expression.text[:60] + "…", "length": len(expression.text)}


def fairness_phase(
    children: Children,
    specs: list[ServerSpec],
    levels: list[int],
    runs: int,
    duration: float,
    cores: tuple[int | None, int | None],
    workdir: Path,
    attack: Expression,
    costly: Expression,
    results: dict[str, Any],
    display: Display,
) -> None:
    """Every fairness point, the runs interleaved: run 1 of every mode before and after, then
    run 2, ..."""
    attack_file, costly_file = workdir / "attack.txt", workdir / "costly.txt"
    attack_file.write_text(attack.text)
    costly_file.write_text(costly.text)
    results["meta"]["fairness"] = {
        "attack": _described(attack),
        "bystander_costly": _described(costly),
        "cheap_interval_ms": CHEAP_INTERVAL * 1000,
        "costly_interval_s": COSTLY_INTERVAL,
        "warmup_s": WARMUP,
        "attacker_nice": ATTACKER_NICE,
    }
    for level in levels:
        point: dict[tuple[str, str], list[dict[str, Any]]] = {
            (spec.name, variant): [] for spec in specs for variant in VARIANTS
        }
        for run in range(runs):
            for spec in specs:
                for variant in VARIANTS:
                    display.status(f"fair x{level}: {spec.name} {variant} (run {run + 1}/{runs})")
                    result = run_fair(
                        children, spec, variant, level, duration, cores, workdir,
                        attack_file, costly_file, costly.cpu_ms,
                    )  # fmt: skip
                    point[spec.name, variant].append(result)
                    display.advance()
                    display.say(describe_fair(spec.name, variant, level, result))
        for (name, variant), point_runs in point.items():
            results["servers"][name]["ran"] = True
            results["fairness"].append(
                {
                    "connections": level,
                    "server": name,
                    "variant": variant,
                    "runs": point_runs,
                    **aggregate(point_runs, FAIR_METRICS),
                }
            )


attacker_number = itertools.count().__next__  # names each attacker's log in the workdir


def run_fair(
    children: Children,
    spec: ServerSpec,
    variant: str,
    connections: int,
    duration: float,
    cores: tuple[int | None, int | None],
    workdir: Path,
    attack_file: Path,
    costly_file: Path,
    costly_cpu_ms: float | None,
) -> dict[str, Any]:
    """One run: a fresh server, the attack, the bystander's window; its figures or an error."""
    server_core, client_core = cores
    try:
        server = start_server(children, spec, server_core, workdir, extra=VARIANTS[variant])
    except StartError as exc:
        return {"error": str(exc)}
    attacker: subprocess.Popen[bytes] | None = None
    try:
        argv = [
            sys.executable, str(PEERS_DIR / "fair_attacker.py"), "--host", HOST,
            "--port", str(server.port), "--connections", str(connections),
            "--expr-file", str(attack_file), "--timeout", f"{ANSWER_TIMEOUT:g}",
            "--open-deadline", f"{OPEN_DEADLINE:g}",
        ]  # fmt: skip
        attacker_log = workdir / f"attacker-{attacker_number()}.err"
        with open(attacker_log, "wb") as log:
            attacker = children.spawn(
                pinned(client_core, ["nice", "-n", str(ATTACKER_NICE), *argv]),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        ready = read_json_line(attacker, OPEN_DEADLINE + 30)
        if ready is None:
            tail = attacker_log.read_text(errors="replace")[-400:]
            alive = server.alive()
            return {"error": f"the attacker reported nothing: {tail}", "server_alive": alive}
        time.sleep(WARMUP)
        start = _snapshot(server, attacker)
        bystander = _run_bystander(children, server, duration, client_core, costly_file)
        end = _snapshot(server, attacker)
        _command(attacker, b"exit")
        done = read_json_line(attacker, ANSWER_TIMEOUT + 30)
        if not server.alive():
            lines = server.stderr_tail(1000).strip().splitlines() or ["(nothing)"]
            return {
                "error": f"server died during the run (status {server.proc.returncode}); "
                f"its stderr ends: {lines[-1][:200]}"
            }
        if done is None or start is None or end is None:
            return {"error": "the attacker stopped reporting", "server_alive": server.alive()}
        if "error" in bystander:
            return bystander
        return _figures(ready, start, end, done, bystander, variant, costly_cpu_ms)
    finally:
        if attacker is not None:
            children.stop(attacker)
        children.stop(server.proc)



def _command(attacker: subprocess.Popen[bytes], line: bytes) -> None:
    assert attacker.stdin is not None
    with contextlib.suppress(OSError):
        attacker.stdin.write(line + b"\n")
        attacker.stdin.flush()


def _snapshot(server: Server, attacker: subprocess.Popen[bytes]) -> dict[str, Any] | None:
    """The attacker's counts, the pool's metrics (python -m app only) and the server's RSS."""
    _command(attacker, b"mark")
    mark = read_json_line(attacker, ANSWER_TIMEOUT)
    if mark is None:
        return None
    mark["rss_kb"] = tree_rss_kb(server.pid) if server.alive() else 0
    if server.spec.name == "asyncio":
        mark["metrics"] = _pool_metrics(server.port)
    return mark


def _pool_metrics(port: int) -> dict[str, float]:
    """calcserve_calc_* samples from GET /metrics (names without the prefix; {} on failure)."""
    request = f"GET /metrics HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection((HOST, port), timeout=ANSWER_TIMEOUT) as sock:
            status, _, body = http_request(sock, request)
    except (OSError, ValueError):
        return {}
    found: dict[str, float] = {}
    if status != 200:
        return found
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith("calcserve_calc_"):
            name, _, value = line.rpartition(" ")
            found[name.removeprefix("calcserve_calc_")] = float(value)
    return found


def _run_bystander(
    children: Children, server: Server, duration: float, core: int | None, costly_file: Path
) -> dict[str, Any]:
    argv = [
        sys.executable, str(PEERS_DIR / "fair_bystander.py"), "--host", HOST,
        "--port", str(server.port), "--source", BYSTANDER_SOURCE, "--duration", f"{duration:g}",
        "--cheap-interval", f"{CHEAP_INTERVAL:g}", "--costly-interval", f"{COSTLY_INTERVAL:g}",
        "--costly-file", str(costly_file), "--timeout", f"{ANSWER_TIMEOUT:g}",
    ]  # fmt: skip
    proc = children.spawn(
        pinned(core, argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=duration + ANSWER_TIMEOUT + 30)
    except subprocess.TimeoutExpired:
        children.stop(proc)
        return {"error": "the bystander did not finish in time"}
    children.procs.remove(proc)  # finished and reaped
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("BENCH_JSON "):
            parsed: dict[str, Any] = json.loads(line[len("BENCH_JSON ") :])
            return parsed
    return {"error": f"no summary from the bystander: {err.decode(errors='replace')[-400:]}"}


def _figures(
    ready: dict[str, Any],
    start: dict[str, Any],
    end: dict[str, Any],
    done: dict[str, Any],
    bystander: dict[str, Any],
    variant: str,
    costly_cpu_ms: float | None,
) -> dict[str, Any]:
    """One run's figures from the snapshots: the window's rates, the whole run's counts."""
    window = end["t"] - start["t"]
    cheap, costly = bystander["cheap"], bystander["costly"]

    def in_window(status: str) -> int:
        return int(end["statuses"].get(status, 0)) - int(start["statuses"].get(status, 0))

    answered = sum(in_window(s) for s in end["statuses"])
    totals = {int(k): int(v) for k, v in done["statuses"].items()}
    result: dict[str, Any] = {
        "window_s": round(window, 3),
        "attacker_open": ready["open"],
        "attacker_connect_errors": done["connect_errors"],
        "attacker_ok_per_s": round(in_window("200") / window, 1),
        "attacker_answers_per_s": round(answered / window, 1),
        "attacker_statuses": {str(k): v for k, v in sorted(totals.items())},
        "shed_429": totals.get(429, 0),
        "shed_503": totals.get(503, 0),
        "refused_422": totals.get(422, 0),
        "unanswered": sum(done["unanswered"].values()),
        "unanswered_by": done["unanswered"],
        "missing_retry_after": done["missing_retry_after"],
        "cheap_sent": cheap["sent"],
        "cheap_ok": cheap["ok"],
        "costly_sent": costly["sent"],
        "costly_ok": costly["ok"],
        "cheap_non_200": cheap["non_200"],
        "costly_non_200": costly["non_200"],
        "bystander_non_200": cheap["non_200"] + costly["non_200"],
        "bystander_others": {"cheap": cheap["others"], "costly": costly["others"]},
        "rss_start_kb": start["rss_kb"],
        "rss_end_kb": end["rss_kb"],
        "rss_growth_kb": end["rss_kb"] - start["rss_kb"],
    }
    for key in ("p50_ms", "p99_ms", "max_ms", "alone_p50_ms", "alone_p99_ms"):
        if key in cheap:
            result[f"cheap_{key}"] = cheap[key]
        if key in costly:
            result[f"costly_{key}"] = costly[key]
    if variant == "after":
        attacker_jobs = in_window("200") + in_window("422")
        jobs = attacker_jobs + costly["ok"]
        if jobs:
            result["attacker_job_share"] = round(attacker_jobs / jobs, 4)
    if start.get("metrics") and end.get("metrics"):
        before, after = start["metrics"], end["metrics"]
        busy = after.get("busy_seconds_total", 0.0) - before.get("busy_seconds_total", 0.0)
        jobs_done = after.get("jobs_total", 0.0) - before.get("jobs_total", 0.0)
        result["pool_busy_share"] = round(busy / window, 4)
        result["pool_jobs"] = int(jobs_done)
        if variant == "after" and busy > 0 and costly_cpu_ms is not None:
            # The pool does not time its clients apart: the bystander's share is its costly
            # answers at what one costs this process (an estimate), the rest is the attacker's.
            theirs = busy - costly["ok"] * costly_cpu_ms / 1000
            result["attacker_pool_share"] = round(max(0.0, theirs) / busy, 4)
    if result["cheap_ok"] == 0:
        result["error"] = "the bystander's cheap questions got no answer"
    return result


def describe_fair(name: str, variant: str, level: int, r: dict[str, Any]) -> str:
    if "error" in r and "cheap_ok" not in r:
        return f"fair x{level:<4} {name:12} {variant:6} ERROR {r['error']}"
    p99 = r.get("cheap_p99_ms")
    costly = r.get("costly_max_ms")
    text = (
        f"fair x{level:<4} {name:12} {variant:6} cheap p50 {r.get('cheap_p50_ms', 0):8.2f} ms"
        f"  p99 {p99 if p99 is not None else float('nan'):8.2f} ms"
        f"  costly max {costly if costly is not None else float('nan'):7.0f} ms"
        f"  attacker {r['attacker_ok_per_s']:6,.0f} ok/s  429 {r['shed_429']:,}"
        f"  503 {r['shed_503']:,}  422 {r['refused_422']:,}  unanswered {r['unanswered']}"
    )
    if r["bystander_non_200"]:
        text += f"  bystander failures {r['bystander_others']}"
    if r.get("error"):
        text += f"  ERROR {r['error']}"
    return text
