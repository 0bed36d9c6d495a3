"""The calculation pool: worker processes for the calculations a serving thread must not do.

One pool per server process, shared by all its connections, in every mode. A driver submits a
`Job` for a client and gets a `Ticket`, or at once a `Shed` (429 or 503 with Retry-After) when
the client or the pool is over its bound. The ticket's outcome arrives when a worker has
computed it; each mode takes it in its own idiom:

- asyncio passes `notify`, which is called from the pool's thread when the outcome is in; it
  hands the ticket to the loop with `call_soon_threadsafe`, which writes to the loop's own
  wake-up pipe, and the connection's coroutine awaits a future.
- select and selectors pass `notify` too; it posts the ticket to a `Mailbox`, a socket pair
  whose reading end sits in the same select() call as the client sockets.
- the thread models call `ticket.wait()`, which blocks with the GIL released.

Promises:

- **A hard time limit, enforced by the OS.** A job that uses more than `timeout` seconds of CPU
  on its worker is ended by the kernel (the worker arms ITIMER_PROF, whose SIGPROF terminates
  it; see app/pool_worker.py), and the worker is replaced; its outcome is `Stopped("timeout")`.
  Time spent queued or waiting for a CPU does not count. A backstop on the wall clock
  (BACKSTOP_FACTOR) SIGKILLs a worker that is stopped or stuck. A worker that dies on its own
  mid-job (killed from outside, out of memory) gives `Stopped("lost")` to that one job, and is
  replaced.
- **Fair shares.** Waiting jobs are queued per client, and a free worker takes the next job of
  the waiting client that has had the least pool time so far (start-time fair queueing over
  measured busy time). A client with 500 connections gets no more pool time than a client with
  one, and a client with cheap jobs is not held behind another's costly ones.
- **Bounded.** A client may have `client_queue` jobs queued or running; one more is
  `Shed("client_share")`, a 429. At most `backlog` jobs wait in all; one more is
  `Shed("saturated")`, a 503. Either comes back at once: never a hang, never unbounded memory.
- Every accepted ticket gets exactly one outcome, including at `close()`.

Strategy: one dispatcher thread owns the workers. It sleeps in a selector on the workers'
pipes and a wake-up pipe, with a timeout at the nearest job deadline; submissions are a dict and
deque operation under a lock, and wake the dispatcher only when a worker is idle. Workers are
`python -m app.pool_worker` children (fork+exec, so this is safe beside threads and in any
mode), started at `start()` and again whenever one dies; they talk over stdin and stdout in
length-prefixed messages (see app/pool_worker.py).

Why not `concurrent.futures.ProcessPoolExecutor`: it cannot stop a task that is already running
(`cancel()` only removes queued ones), and killing one of its workers breaks the whole pool.
`multiprocessing.Pool` has no per-task time limit either. What we need beyond a plain pipe
is small: kill and replace one worker, and choose whose job runs next.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import pickle
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import Final, Generic, Literal, Protocol, TypeVar

from app.calculator import CalcError, Result
from app.config import CALC_BACKLOG, CALC_CLIENT_QUEUE, CALC_TIMEOUT
from app.work import CLIENT_SHARE, LOST, SATURATED, TIMEOUT, Job, Outcome, Shed, Stopped

__all__ = [
    "DEFAULT_BACKLOG",
    "DEFAULT_CLIENT_QUEUE",
    "DEFAULT_TIMEOUT",
    "CalcPool",
    "Mailbox",
    "PoolObserver",
    "Ticket",
    "default_workers",
]

log = logging.getLogger("calcserve.pool")
_T = TypeVar("_T")

# The bounds' defaults are the options' (app/config.py says where each value comes from).
DEFAULT_TIMEOUT: Final = CALC_TIMEOUT
DEFAULT_CLIENT_QUEUE: Final = CALC_CLIENT_QUEUE
DEFAULT_BACKLOG: Final = CALC_BACKLOG
# Retry-After, in whole seconds, stays within these (RFC 9110 10.2.3: delay-seconds).
MIN_RETRY_AFTER: Final = 1
MAX_RETRY_AFTER: Final = 30
# What a job is assumed to cost before any has been measured, and how fast the estimate moves
# (an exponentially weighted mean over ~20 jobs).
INITIAL_ESTIMATE: Final = 0.02
ESTIMATE_WEIGHT: Final = 0.05
# A job's worker is SIGKILLed once the job has taken this many times its CPU limit in wall
# time, and at least BACKSTOP_MIN seconds: the CPU limit is the real one (the kernel's), this
# only catches a worker that cannot use its CPU at all (stopped, or stuck in the kernel). 10x
# leaves room for a worker that gets a tenth of a core on a machine loaded past its cores.
BACKSTOP_FACTOR: Final = 10.0
BACKSTOP_MIN: Final = 2.0
# A worker that has not said "ready" this long after its start is killed and started again.
START_TIMEOUT: Final = 30.0
# Workers that die before they are ready (a broken install) are restarted after a pause that
# doubles each time, up to this; after START_FAILURES in a row, waiting jobs are failed rather
# than left hanging.
MAX_RESTART_DELAY: Final = 5.0
START_FAILURES: Final = 3

_HEADER: Final = struct.Struct(">I")
_READ_SIZE: Final = 256 * 1024  # an outcome is at most ~100 KB (a 100,000-digit exact result)


def default_workers(server_processes: int = 1) -> int:
    """The CPUs this process may use, divided among `server_processes` (at least one each)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, server_processes))


class PoolObserver(Protocol):
    """Where the pool reports what it does (app.metrics.Metrics implements it)."""

    def calc_queue_depth(self, depth: int) -> None: ...
    def calc_busy(self, seconds: float) -> None: ...
    def calc_shed(self, reason: str) -> None: ...
    def calc_killed(self, reason: str) -> None: ...


class Ticket:
    """One accepted job. For callers: `wait()`, `done`, `outcome`, `cancel()`.

    `notify(ticket)`, if given at submit, is called once from the pool's thread when the outcome
    is in; it must be quick and must not block (post it somewhere and return).
    """

    __slots__ = ("_done", "_notify", "client", "job", "outcome", "started")

    def __init__(self, job: Job, client: Hashable,
                 notify: Callable[[Ticket], None] | None) -> None:
        self.job = job
        self.client = client
        self.outcome: Outcome | None = None
        self.started: float | None = None  # when a worker took it (monotonic)
        self._done = threading.Event()
        self._notify = notify

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Outcome:
        """Block (GIL released) until the outcome is in; the pool guarantees one comes."""
        if not self._done.wait(timeout):
            raise TimeoutError("the calculation pool did not answer")
        assert self.outcome is not None
        return self.outcome

    def _finish(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self._done.set()
        notify = self._notify
        if notify is not None:
            self._notify = None
            try:
                notify(self)
            except Exception:  # a driver's bug must not kill the dispatcher
                log.exception("calculation pool: a completion callback failed")


class Mailbox(Generic[_T]):
    """Completions for a select() loop: `post(item)` from any thread (e.g. in a ticket's
    `notify`), `fileno()` in the select set, `take()` in the loop. The self-pipe trick, as for
    signals: the byte that `post` writes makes select() return."""

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._items: collections.deque[_T] = collections.deque()

    def fileno(self) -> int:
        return self._reader.fileno()

    @property
    def reader(self) -> socket.socket:
        """The socket to watch for reading (for select.select's lists of sockets)."""
        return self._reader

    def poster(self, item: _T) -> Callable[[Ticket], None]:
        """A ticket's `notify` that posts `item` here."""
        def notify(ticket: Ticket) -> None:
            self.post(item)

        return notify

    def post(self, item: _T) -> None:
        self._items.append(item)
        with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending already
            self._writer.send(b"\0")

    def take(self) -> list[_T]:
        with contextlib.suppress(BlockingIOError):
            while self._reader.recv(4096):
                pass
        items = []
        with contextlib.suppress(IndexError):
            while True:
                items.append(self._items.popleft())
        return items

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


class _Client:
    """One client's waiting jobs, its jobs on workers, and its virtual time (pool seconds)."""

    __slots__ = ("key", "running", "vtime", "waiting")

    def __init__(self, key: Hashable, vtime: float) -> None:
        self.key = key
        self.waiting: collections.deque[Ticket] = collections.deque()
        self.running = 0
        self.vtime = vtime


class _Worker:
    __slots__ = ("broken", "buffer", "charged", "deadline", "proc", "ready", "started", "ticket")

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.buffer = bytearray()
        self.ready = False
        self.broken = False  # its pipe failed while idle: reaped when its end of file comes
        self.started = time.monotonic()
        self.ticket: Ticket | None = None
        self.deadline = math.inf
        self.charged = 0.0  # the estimate charged to its client's vtime at dispatch


class CalcPool:
    """A fixed number of calculation worker processes with per-client fair queues.

    For drivers: `start()`, `submit(client, job, notify)`, `has_room(client)`,
    `wait_for_room(client, timeout)` (thread models), `close()`; `busy_with(client)` for tests.
    `observer` receives the pool's metrics.
    """

    def __init__(
        self,
        workers: int,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        client_queue: int = DEFAULT_CLIENT_QUEUE,
        backlog: int = DEFAULT_BACKLOG,
        observer: PoolObserver | None = None,
    ) -> None:
        if workers < 1 or client_queue < 1 or backlog < 1 or not timeout > 0:
            raise ValueError("a pool needs at least one worker, a positive timeout and bounds")
        self.size = workers
        self.timeout = timeout
        self.client_queue = client_queue
        self.backlog = backlog
        self.observer = observer
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._clients: dict[Hashable, _Client] = {}
        self._room: dict[Hashable, collections.deque[threading.Event]] = {}  # wait_for_room
        self._queued = 0
        self._vclock = 0.0
        self._estimate = INITIAL_ESTIMATE
        self._workers: list[_Worker] = []
        self._idle = 0  # workers ready and without a job
        self._closing = False
        self._failures = 0
        self._restart_at = 0.0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="calc-pool", daemon=True)
        self.killed = collections.Counter[str]()
        self.shed = collections.Counter[str]()
        self.busy_seconds = 0.0

    # -- for drivers --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the dispatcher, which starts the workers (without waiting for them)."""
        self._thread.start()

    def busy_with(self, client: Hashable) -> bool:
        """True while `client` has a job queued or running (for tests and operators)."""
        return client in self._clients

    def has_room(self, client: Hashable) -> bool:
        """True if `client` may have one more job queued or running (no 429 for it now)."""
        state = self._clients.get(client)
        return state is None or len(state.waiting) + state.running < self.client_queue

    def wait_for_room(self, client: Hashable, timeout: float) -> bool:
        """Block (GIL released) until `client` has room for a job, or `timeout` s have passed;
        True if woken for room. For thread drivers, after a 429 (see app/server.py's
        `_wait_for_room` for why). One waiter is woken per job of that client that ends."""
        with self._lock:
            if self._closing or self.has_room(client):
                return True
            event = threading.Event()
            self._room.setdefault(client, collections.deque()).append(event)
        if event.wait(timeout):
            return True
        with self._lock:
            waiters = self._room.get(client)
            if waiters is not None:
                with contextlib.suppress(ValueError):
                    waiters.remove(event)
                if not waiters:
                    del self._room[client]
        return event.is_set()

    def _room_freed(self, client: Hashable) -> None:
        """Under the lock: a job of `client` ended or left; wake its first waiter."""
        waiters = self._room.get(client)
        if waiters:
            waiters.popleft().set()
            if not waiters:
                del self._room[client]

    @property
    def workers(self) -> list[int]:
        """The pids of the worker processes right now (for tests and operators)."""
        with self._lock:
            return [w.proc.pid for w in self._workers]

    @property
    def ready_workers(self) -> int:
        """How many workers have started and can take a job."""
        with self._lock:
            return sum(1 for w in self._workers if w.ready)

    def worker_of(self, ticket: Ticket) -> int | None:
        """The pid of the worker computing `ticket`, if one is."""
        with self._lock:
            return next((w.proc.pid for w in self._workers if w.ticket is ticket), None)

    def submit(
        self, client: Hashable, job: Job, notify: Callable[[Ticket], None] | None = None
    ) -> Ticket | Shed:
        """Queue `job` for `client`; a `Shed` at once if a bound is reached (see the module)."""
        with self._lock:
            if self._closing:
                return Shed(SATURATED, MIN_RETRY_AFTER)
            state = self._clients.get(client)
            outstanding = 0 if state is None else len(state.waiting) + state.running
            if outstanding >= self.client_queue:
                active = len(self._clients)
                shed = Shed(CLIENT_SHARE, self._retry_after(outstanding * active))
            elif self._queued >= self.backlog:
                shed = Shed(SATURATED, self._retry_after(self._queued))
            else:
                if state is None:
                    state = self._clients[client] = _Client(client, self._vclock)
                ticket = Ticket(job, client, notify)
                state.waiting.append(ticket)
                self._queued += 1
                depth = self._queued
                wake = self._idle > 0
                shed = None
        if shed is not None:
            self.shed[shed.reason] += 1
            if self.observer is not None:
                self.observer.calc_shed(shed.reason)
            return shed
        if self.observer is not None:
            self.observer.calc_queue_depth(depth)
        if wake:
            self._wake()
        return ticket

    def cancel(self, ticket: Ticket) -> bool:
        """Drop a job that has not started (its client went away); False if it has."""
        with self._lock:
            state = self._clients.get(ticket.client)
            if state is None or ticket.started is not None or ticket.done:
                return False
            try:
                state.waiting.remove(ticket)
            except ValueError:
                return False
            self._queued -= 1
            if not state.waiting and not state.running:
                del self._clients[ticket.client]
            self._room_freed(ticket.client)
        ticket._notify = None
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop: jobs still waiting get `Shed(saturated)`, running ones `Stopped(lost)`; the
        workers are killed and reaped before this returns."""
        with self._lock:
            self._closing = True
            for waiters in self._room.values():
                for event in waiters:
                    event.set()
            self._room.clear()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if not self._thread.is_alive() or not self._thread.ident:
            self._shutdown_workers()  # also when the thread never started

    # -- the dispatcher thread ----------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    def _retry_after(self, jobs_ahead: int) -> int:
        seconds = jobs_ahead * self._estimate / self.size
        return max(MIN_RETRY_AFTER, min(MAX_RETRY_AFTER, math.ceil(seconds)))

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # pragma: no cover - a bug here must not leave tickets hanging
            log.exception("calculation pool: the dispatcher failed")
        finally:
            self._shutdown_workers()

    def _loop(self) -> None:
        while True:
            now = time.monotonic()
            finished: list[tuple[Ticket, Outcome]] = []
            with self._lock:
                if self._closing:
                    return
                self._replenish(now, finished)
                self._dispatch(now)
                wait = self._next_wait(now)
            self._complete(finished)
            for key, _ in self._selector.select(wait):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                else:
                    self._on_readable(key.data)
            self._expire(time.monotonic())

    def _replenish(self, now: float, finished: list[tuple[Ticket, Outcome]]) -> None:
        """(Locked.) Start workers up to `size`, pausing after failed starts."""
        if len(self._workers) < self.size and now >= self._restart_at:
            while len(self._workers) < self.size:
                try:
                    self._spawn()
                except OSError as exc:
                    log.error("calculation pool: cannot start a worker: %s", exc)
                    self._start_failed(now, finished)
                    break
        if self._failures >= START_FAILURES and not any(w.ready for w in self._workers):
            self._fail_waiting(Stopped(LOST, self.timeout), finished)

    def _spawn(self) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.pool_worker", str(os.getpid()), repr(self.timeout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
        )
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        worker = _Worker(proc)
        self._workers.append(worker)
        self._selector.register(proc.stdout.fileno(), selectors.EVENT_READ, worker)

    def _start_failed(self, now: float, finished: list[tuple[Ticket, Outcome]]) -> None:
        self._failures += 1
        delay = min(MAX_RESTART_DELAY, 0.1 * 2 ** (self._failures - 1))
        self._restart_at = now + delay

    def _fail_waiting(self, outcome: Outcome, finished: list[tuple[Ticket, Outcome]]) -> None:
        for state in list(self._clients.values()):
            while state.waiting:
                finished.append((state.waiting.popleft(), outcome))
                self._queued -= 1
            if not state.running:
                del self._clients[state.key]

    def _dispatch(self, now: float) -> None:
        """(Locked.) Give each idle worker the next job: the waiting client with least vtime."""
        while self._idle and self._queued:
            state = min((s for s in self._clients.values() if s.waiting),
                        key=lambda s: s.vtime)
            ticket = state.waiting.popleft()
            self._queued -= 1
            worker = next(w for w in self._workers
                          if w.ready and w.ticket is None and not w.broken)
            payload = ticket.job.expr.encode("utf-8", "surrogatepass")
            try:
                assert worker.proc.stdin is not None
                # An idle worker's pipe is empty and an expression is far below the pipe's
                # 64 KiB, so this write never blocks.
                worker.proc.stdin.write(_HEADER.pack(len(payload)) + payload)
            except OSError:  # it died while idle: put the job back, the read side reaps it
                state.waiting.appendleft(ticket)
                self._queued += 1
                worker.broken = True
                self._idle -= 1
                continue
            self._idle -= 1
            ticket.started = now
            worker.ticket = ticket
            worker.deadline = now + max(BACKSTOP_MIN, BACKSTOP_FACTOR * self.timeout)
            worker.charged = self._estimate
            state.running += 1
            state.vtime += self._estimate
            self._vclock = max(self._vclock, state.vtime - self._estimate)
        if self.observer is not None:
            self.observer.calc_queue_depth(self._queued)

    def _next_wait(self, now: float) -> float | None:
        deadlines = [w.deadline for w in self._workers if w.ticket is not None]
        deadlines += [w.started + START_TIMEOUT for w in self._workers if not w.ready]
        if len(self._workers) < self.size:
            deadlines.append(self._restart_at)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _on_readable(self, worker: _Worker) -> None:
        assert worker.proc.stdout is not None
        try:
            data = os.read(worker.proc.stdout.fileno(), _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._worker_died(worker)
            return
        worker.buffer += data
        while len(worker.buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(worker.buffer)
            if len(worker.buffer) < _HEADER.size + size:
                return
            payload = bytes(worker.buffer[_HEADER.size:_HEADER.size + size])
            del worker.buffer[:_HEADER.size + size]
            self._on_message(worker, pickle.loads(payload))

    def _on_message(self, worker: _Worker, message: tuple[str, object]) -> None:
        kind, value = message
        if kind == "ready":
            with self._lock:
                worker.ready = True
                self._idle += 1
                self._failures = 0
            return
        ticket = worker.ticket
        if ticket is None:  # pragma: no cover - a worker never speaks unasked
            return
        outcome: Outcome
        if isinstance(value, Result | CalcError) and kind in ("ok", "error"):
            outcome = value
        else:
            log.error("calculation pool: the calculator failed on %r: %s", ticket.job.expr, value)
            outcome = Stopped(LOST, self.timeout)
        self._job_done(worker, outcome, idle=True)

    def _job_done(self, worker: _Worker, outcome: Outcome, *, idle: bool) -> None:
        ticket = worker.ticket
        assert ticket is not None and ticket.started is not None
        busy = time.monotonic() - ticket.started
        with self._lock:
            worker.ticket = None
            worker.deadline = math.inf
            state = self._clients.get(ticket.client)
            if state is not None:
                state.running -= 1
                state.vtime += busy - worker.charged
                if not state.waiting and not state.running:
                    del self._clients[ticket.client]
                self._room_freed(ticket.client)
            self._estimate += ESTIMATE_WEIGHT * (busy - self._estimate)
            if idle:
                self._idle += 1
            self.busy_seconds += busy
        if self.observer is not None:
            self.observer.calc_busy(busy)
        ticket._finish(outcome)

    def _expire(self, now: float) -> None:
        for worker in list(self._workers):
            if worker.ticket is not None and now >= worker.deadline:
                log.warning("calculation pool: worker %d gave no answer in %g s of wall time; "
                            "killing it", worker.proc.pid, now - (worker.ticket.started or now))
                self._kill(worker, TIMEOUT)
                self._job_done(worker, Stopped(TIMEOUT, self.timeout), idle=False)
            elif not worker.ready and now >= worker.started + START_TIMEOUT:
                log.error("calculation pool: worker %d did not start; replacing it",
                          worker.proc.pid)
                self._kill(worker, LOST)

    def _worker_died(self, worker: _Worker) -> None:
        try:
            code: int | None = worker.proc.wait(timeout=1.0)  # its pipe closed: it is exiting
        except subprocess.TimeoutExpired:
            code = None
        if worker.ticket is not None:
            reason: Literal["timeout", "lost"] = TIMEOUT if code == -signal.SIGPROF else LOST
            if reason == TIMEOUT:
                log.info("calculation pool: a job used its %g s of CPU; worker %d was ended",
                         self.timeout, worker.proc.pid)
            else:
                log.error("calculation pool: worker %d died during a job (exit status %s)",
                          worker.proc.pid, code)
            self._kill(worker, reason)
            self._job_done(worker, Stopped(reason, self.timeout), idle=False)
            return
        if not worker.ready:
            log.error("calculation pool: worker %d exited before it was ready (status %s)",
                      worker.proc.pid, code)
            with self._lock:
                self._start_failed(time.monotonic(), [])
        self._kill(worker, LOST if worker.ready else "")

    def _kill(self, worker: _Worker, reason: str) -> None:
        """Kill (if alive), reap and forget a worker; the loop starts its replacement."""
        with contextlib.suppress(ProcessLookupError, OSError):
            worker.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.proc.wait(timeout=5)
        assert worker.proc.stdout is not None and worker.proc.stdin is not None
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(worker.proc.stdout.fileno())
        for stream in (worker.proc.stdout, worker.proc.stdin):
            with contextlib.suppress(OSError):
                stream.close()
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
                if worker.ready and worker.ticket is None and not worker.broken:
                    self._idle -= 1
        if reason:
            self.killed[reason] += 1
            if self.observer is not None:
                self.observer.calc_killed(reason)

    def _complete(self, finished: list[tuple[Ticket, Outcome]]) -> None:
        for ticket, outcome in finished:
            ticket._finish(outcome)

    def _shutdown_workers(self) -> None:
        finished: list[tuple[Ticket, Outcome]] = []
        with self._lock:
            self._closing = True
            self._fail_waiting(Shed(SATURATED, MIN_RETRY_AFTER), finished)
            workers = list(self._workers)
        for worker in workers:
            if worker.ticket is not None:
                self._kill(worker, "")
                self._job_done(worker, Stopped(LOST, self.timeout), idle=False)
            else:
                self._kill(worker, "")
        self._complete(finished)
        with contextlib.suppress(OSError):
            self._selector.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

