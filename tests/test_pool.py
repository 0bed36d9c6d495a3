"""The calculation pool (app/pool.py) through its public API, with real worker processes.

Every test here starts real `python -m app.pool_worker` children: the time limit is a real
SIGKILL, a lost worker is a real process killed from outside, and the fair queue is observed in
the order real outcomes come back. Durations below are lower bounds or generous ceilings that
only a hang or a broken promise would cross; speed itself is measured in scripts/bench.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from app.calculator import CalcError, Result, evaluate
from app.pool import CalcPool, Mailbox, Ticket
from app.work import Job, Shed, Stopped

# ~5-20 ms of CPU each with the full budget, far above the inline budget: real pool work.
COSTLY = "+".join(["sqrt(2)"] * 800)
CHEAP = "1+2"
# Two kernel ticks of CPU and more (the kernel checks CPU timers on its 4 ms tick at HZ=250), so
# that a 1 ms limit fires during it; see tests/test_fairness.py.
SLOW = "+".join(["(1+2i)^0.5"] * 700)
TRIES = 3
READY_TIMEOUT = 30.0  # workers start in ~0.1 s; CI shares its 2 cores with other suites
WAIT = 30.0  # an outcome always comes; this only turns a hang into a failure


def wait_ready(pool: CalcPool, count: int | None = None) -> None:
    """Until `count` (default: all) workers have said ready."""
    deadline = time.monotonic() + READY_TIMEOUT
    want = pool.size if count is None else count
    while time.monotonic() < deadline:
        if pool.ready_workers >= want:
            return
        time.sleep(0.01)
    raise AssertionError(f"pool workers not ready: {pool.ready_workers}/{want}")


@pytest.fixture
def pool() -> Iterator[CalcPool]:
    p = CalcPool(2, timeout=5.0)
    p.start()
    wait_ready(p)
    yield p
    p.close()


def outcome(pool: CalcPool, client: str, expr: str) -> object:
    ticket = pool.submit(client, Job(expr))
    assert isinstance(ticket, Ticket), ticket
    return ticket.wait(WAIT)


def test_results_and_errors_come_back_as_the_calculator_gives_them(pool: CalcPool) -> None:
    assert outcome(pool, "a", COSTLY) == evaluate(COSTLY)
    assert outcome(pool, "a", CHEAP) == Result("1+2", "3", True, None)
    error = outcome(pool, "a", "1/(2-2)")
    assert isinstance(error, CalcError)
    with pytest.raises(CalcError) as direct:
        evaluate("1/(2-2)")
    assert error.kind == direct.value.kind == "division_by_zero"
    assert (error.message, error.position, error.length) == (
        direct.value.message, direct.value.position, direct.value.length)


def test_a_job_past_the_time_limit_is_killed_and_its_worker_replaced() -> None:
    pool = CalcPool(1, timeout=0.001)  # far below what SLOW takes
    pool.start()
    try:
        wait_ready(pool)
        before = pool.workers
        started = time.monotonic()
        for _ in range(TRIES):
            result = outcome(pool, "a", SLOW)
            if isinstance(result, Stopped):
                break
            assert isinstance(result, CalcError)  # it ended itself before a tick saw it
            before = pool.workers
        assert isinstance(result, Stopped) and result.reason == "timeout"
        assert result.limit == 0.001
        assert time.monotonic() - started < WAIT
        assert pool.killed["timeout"] == 1
        wait_ready(pool)  # the replacement comes up and serves
        assert pool.workers != before
        assert not _alive(before[0])
        assert outcome(pool, "a", CHEAP) == evaluate(CHEAP)
    finally:
        pool.close()


def test_a_stuck_worker_is_killed_by_the_wall_clock_backstop() -> None:
    """A worker that uses no CPU (stopped, or stuck in the kernel) never trips its CPU timer:
    the pool's wall-clock backstop (BACKSTOP_MIN, 2 s here) kills it and answers the job."""
    pool = CalcPool(1, timeout=0.01)
    pool.start()
    try:
        wait_ready(pool)
        (worker,) = pool.workers
        os.kill(worker, signal.SIGSTOP)
        started = time.monotonic()
        ticket = pool.submit("a", Job(COSTLY))
        assert isinstance(ticket, Ticket)
        result = ticket.wait(WAIT)
        waited = time.monotonic() - started
        assert isinstance(result, Stopped) and result.reason == "timeout", result
        assert 1.9 <= waited < WAIT, waited
        assert not _alive(worker)
        wait_ready(pool)
        assert outcome(pool, "a", CHEAP) == evaluate(CHEAP)  # replaced, and serving
    finally:
        pool.close()


def test_a_worker_killed_from_outside_costs_only_its_own_job(pool: CalcPool) -> None:
    # Both workers are stopped (SIGSTOP), so the victim's job is certainly still unanswered on
    # its worker when that worker is killed; the other worker is then let go.
    pids = pool.workers
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        victim = pool.submit("victim", Job(COSTLY))
        assert isinstance(victim, Ticket)
        deadline = time.monotonic() + WAIT
        while pool.worker_of(victim) is None and time.monotonic() < deadline:
            time.sleep(0.001)
        target = pool.worker_of(victim)
        assert target is not None
        os.kill(target, signal.SIGKILL)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    lost = victim.wait(WAIT)
    assert isinstance(lost, Stopped) and lost.reason == "lost"
    assert outcome(pool, "bystander", COSTLY) == evaluate(COSTLY)
    assert pool.killed["lost"] == 1
    wait_ready(pool)
    assert target not in pool.workers and len(pool.workers) == 2
    assert outcome(pool, "victim", CHEAP) == evaluate(CHEAP)


def test_a_client_with_many_jobs_does_not_starve_a_client_with_one() -> None:
    pool = CalcPool(1, timeout=5.0, client_queue=50, backlog=100)
    pool.start()
    try:
        wait_ready(pool)
        order: list[str] = []
        lock = threading.Lock()

        def note(name: str) -> object:
            def notify(ticket: Ticket) -> None:
                with lock:
                    order.append(name)
            return notify

        greedy = [pool.submit("greedy", Job(COSTLY), note(f"g{i}")) for i in range(12)]
        # Now greedy has one job running and eleven waiting.
        modest = pool.submit("modest", Job(COSTLY), note("m"))
        for ticket in [*greedy, modest]:
            assert isinstance(ticket, Ticket)
            ticket.wait(WAIT)
        # One worker: the modest client waits for the greedy job running when it came, and
        # then it is its turn (the pick is by least pool time, and greedy has had some).
        assert order.index("m") <= 2, order
        assert len(order) == 13
    finally:
        pool.close()


def test_bounds_shed_at_once_with_retry_after() -> None:
    pool = CalcPool(1, timeout=5.0, client_queue=2, backlog=3)
    pool.start()
    try:
        wait_ready(pool)
        first = [pool.submit("a", Job(COSTLY)) for _ in range(2)]
        over_share = pool.submit("a", Job(COSTLY))
        assert isinstance(over_share, Shed) and over_share.status == 429
        assert over_share.retry_after >= 1
        others = [pool.submit(f"c{i}", Job(COSTLY)) for i in range(4)]
        sheds = [t for t in others if isinstance(t, Shed)]
        assert sheds and all(s.status == 503 and s.retry_after >= 1 for s in sheds)
        assert pool.shed["client_share"] == 1 and pool.shed["saturated"] == len(sheds)
        for ticket in [*first, *others]:
            if isinstance(ticket, Ticket):
                assert ticket.wait(WAIT) == evaluate(COSTLY)
    finally:
        pool.close()


def test_cancel_drops_a_queued_job_but_not_a_running_one() -> None:
    pool = CalcPool(1, timeout=5.0)
    pool.start()
    try:
        wait_ready(pool)
        # COSTLY runs for ~1.5 ms (compiled): on a busy machine the running job may end, and the
        # queued one start, before cancel() is called. Then the pair is tried again.
        for _attempt in range(TRIES):
            running = pool.submit("a", Job(COSTLY))
            queued = pool.submit("b", Job(COSTLY))
            assert isinstance(running, Ticket) and isinstance(queued, Ticket)
            deadline = time.monotonic() + WAIT
            while running.started is None and time.monotonic() < deadline:
                time.sleep(0.001)
            cancelled = pool.cancel(queued)
            if cancelled:
                break
            assert queued.wait(WAIT) == evaluate(COSTLY)  # too late: it was handed out, and ran
        assert cancelled is True
        assert pool.cancel(running) is False
        assert running.wait(WAIT) == evaluate(COSTLY)
        assert not queued.done
        assert not pool.busy_with("b")
    finally:
        pool.close()


def test_close_answers_every_ticket_and_reaps_every_worker() -> None:
    pool = CalcPool(1, timeout=5.0, client_queue=20, backlog=20)
    pool.start()
    wait_ready(pool)
    pids = pool.workers
    tickets = [pool.submit("a", Job(COSTLY)) for _ in range(10)]
    pool.close()
    outcomes = [t.wait(WAIT) for t in tickets if isinstance(t, Ticket)]
    assert len(outcomes) == 10
    assert all(isinstance(o, Result | Shed | Stopped) for o in outcomes)
    assert pool.workers == []
    assert not any(_alive(pid) for pid in pids)
    late = pool.submit("a", Job(CHEAP))
    assert isinstance(late, Shed) and late.status == 503


def test_a_mailbox_wakes_a_select_loop_from_the_pool_thread(pool: CalcPool) -> None:
    import select

    box: Mailbox[str] = Mailbox()
    try:
        ticket = pool.submit("a", Job(COSTLY), box.poster("conn-1"))
        assert isinstance(ticket, Ticket)
        readable, _, _ = select.select([box.reader], [], [], WAIT)
        assert readable == [box.reader]
        assert box.take() == ["conn-1"]
        assert ticket.done and ticket.outcome == evaluate(COSTLY)
        assert box.take() == []
    finally:
        box.close()


def test_busy_with_is_true_exactly_while_a_client_has_work(pool: CalcPool) -> None:
    assert not pool.busy_with("a")
    ticket = pool.submit("a", Job(COSTLY))
    assert isinstance(ticket, Ticket)
    assert pool.busy_with("a")
    ticket.wait(WAIT)
    assert not pool.busy_with("a")  # the client's state goes before its outcome is given


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes: its state in /proc is Z.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_an_idle_worker_that_dies_is_replaced_and_jobs_still_run(pool: CalcPool) -> None:
    victim = pool.workers[0]
    os.kill(victim, signal.SIGKILL)
    # (A job handed to it in the instant before its end of file is seen would be lost: the
    # pool cannot tell that death from one mid-job. Here the pool is idle, so none is.)
    deadline = time.monotonic() + READY_TIMEOUT
    while (victim in pool.workers or pool.ready_workers < 2) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert victim not in pool.workers and pool.ready_workers == 2
    assert pool.killed["lost"] == 1
    results = [pool.submit(f"c{i}", Job(COSTLY)) for i in range(4)]
    assert all(isinstance(t, Ticket) and t.wait(WAIT) == evaluate(COSTLY) for t in results)


def test_wait_for_room_wakes_one_waiter_per_job_that_ends_or_times_out() -> None:
    pool = CalcPool(1, timeout=5.0, client_queue=1, backlog=8)
    pool.start()
    woken: list[bool] = []
    waiters = [threading.Thread(target=lambda: woken.append(pool.wait_for_room("a", WAIT)))
               for _ in range(2)]
    try:
        wait_ready(pool)
        assert pool.has_room("a") and pool.wait_for_room("a", 0.01)  # room: at once
        (worker,) = pool.workers
        os.kill(worker, signal.SIGSTOP)  # the job cannot end before the waiters wait
        first = pool.submit("a", Job(COSTLY))
        assert isinstance(first, Ticket) and not pool.has_room("a")
        assert pool.has_room("b")  # another client's room is its own
        started = time.monotonic()
        assert pool.wait_for_room("a", 0.2) is False  # no room, and none came
        assert time.monotonic() - started >= 0.19
        for waiter in waiters:
            waiter.start()
        time.sleep(0.2)
        assert woken == []
        os.kill(worker, signal.SIGCONT)
        assert first.wait(WAIT) == evaluate(COSTLY)  # its job ends: one waiter is woken ...
        deadline = time.monotonic() + WAIT
        while not woken and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        assert woken == [True]  # ... and only one
    finally:
        pool.close()  # ... and close wakes the rest
    for waiter in waiters:
        waiter.join(WAIT)
        assert not waiter.is_alive()
    assert woken == [True, True]
