"""`python -m app --workers N`: a pre-fork supervisor that keeps N asyncio workers serving one port.

Model: the supervisor opens one listening socket per worker slot (per address of --host), all
bound to the same port with SO_REUSEPORT, so the kernel spreads new connections across the
slots' accept queues (by a hash of the client's address: no thundering herd, no lock). It then
forks one worker per slot; a worker inherits its slot's sockets and runs the ordinary asyncio
server on them (`app.server.serve`). The supervisor never accepts and never touches a request:
it only starts, watches and stops workers.

The one rule to remember: the supervisor keeps every slot's socket open for its whole life. A
listening socket's accept queue belongs to the socket, not to the process, so when a worker dies
(crash, SIGKILL, OOM) or is replaced, the connections already queued on its slot wait for the
next worker instead of being reset, and a reload hands the same queue from the old worker to
the new one. (Had each worker opened its own SO_REUSEPORT socket, closing it would reset every
connection in its queue: the classic way reloads lose requests with SO_REUSEPORT. Linux 5.14's
net.ipv4.tcp_migrate_req is the other fix; it is off by default.)

Signals:
- SIGTERM, SIGINT: graceful stop. Each worker gets SIGTERM and finishes its in-flight requests
  (up to --graceful-timeout); the supervisor exits 0 when all have, and SIGKILLs what is left a
  few seconds after the grace period. A second SIGINT is passed on: workers exit at once.
- SIGHUP: replace the workers one slot at a time: fork the new worker, wait until it accepts,
  then SIGTERM the old one, which drains while the new one serves the same queue. No request is
  refused or reset. New workers import the server, routes and calculator afresh (the supervisor
  never imports them), so a reload also picks up new code in those modules and the static files;
  the options stay those the supervisor started with.
- Worker recycling (`--max-requests N`, `--max-requests-jitter J`, gunicorn's options): a
  worker that has answered its N + random(0..J) requests tells the supervisor, which replaces
  it the way SIGHUP does (the new worker first, then the old one drains), so no request fails.
- A worker that exits unexpectedly is restarted after a backoff (0.1 s doubling to 10 s, reset
  once a worker has lived STABLE_SECONDS). A slot that fails MAX_FAILURES times in a row is a
  crash loop: the supervisor logs it at CRITICAL, stops the other workers and exits with
  status 3, so that systemd (or whoever runs it) sees the failure instead of a silent flapping.

Other sockets: a Unix socket (`--uds`) or sockets inherited from systemd (`LISTEN_FDS`) or a
launcher (`--fd`) cannot be multiplied with SO_REUSEPORT, so every slot shares the one set, and
its one accept queue; the supervisor still holds it for its whole life, so the rule holds.

Workers report through a pipe: one byte once the server accepts, another once --max-requests
is reached. The supervisor prints the `listening on` line (`http://HOST:PORT`, `https://…`,
`unix:PATH`) once every first-generation worker is ready. Workers ask
the kernel (PR_SET_PDEATHSIG) for SIGTERM if the supervisor dies, so none is left orphaned.
Metrics: each worker writes its counters to its own file in a directory the supervisor creates
(see app.metrics), so GET /metrics on any worker reports the sum over all of them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import random
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from app import metrics as metrics_module
from app import tls
from app.config import Config
from app.listen import Listeners, open_listeners
from app.metrics import Metrics

log = logging.getLogger("calcserve.supervisor")

# Backoff before restarting a slot: doubles per consecutive failure, from 0.1 s (a worker that
# was SIGKILLed is back within a blink) up to 10 s (gunicorn and systemd's RestartSec territory).
BACKOFF_MIN: Final = 0.1
BACKOFF_MAX: Final = 10.0
# A worker that lived this long was healthy: its death starts a fresh count of failures.
STABLE_SECONDS: Final = 10.0
# Consecutive quick failures of one slot that make a crash loop (systemd's StartLimitBurst is 5).
MAX_FAILURES: Final = 5
# How long a new worker may take to accept (import, read static files, start the loop).
READY_TIMEOUT: Final = 30.0
# After --graceful-timeout, workers get this much longer to exit before SIGKILL.
KILL_MARGIN: Final = 5.0
# Exit status when giving up on a crash loop (gunicorn uses 3 for "worker failed to boot").
EXIT_CRASH_LOOP: Final = 3
_READY: Final = b"R"
_RECYCLE: Final = b"M"  # --max-requests reached: replace me
_PR_SET_PDEATHSIG: Final = 1
_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


@dataclass
class WorkerContext:
    """What a worker process is handed: its slot, its listening sockets (one per address of
    --host), where metrics go, `ready()` to call once it accepts connections, and `recycle()`
    to ask for its replacement (--max-requests)."""

    slot: int
    sockets: list[socket.socket]
    metrics_dir: Path
    ready: Callable[[], None]
    recycle: Callable[[], None] = lambda: None


WorkerMain = Callable[[Config, WorkerContext], int]


def serve_worker(config: Config, context: WorkerContext) -> int:
    """The default worker: the asyncio server on the slot's socket (runs in the child)."""
    import asyncio

    from app import server  # imported after fork: a reload (SIGHUP) picks up new code

    async def main(config: Config) -> int:
        loop = asyncio.get_running_loop()
        shutdown = asyncio.Event()
        force = asyncio.Event()

        def on_signal(signum: int) -> None:
            if not shutdown.is_set():
                shutdown.set()
            elif signum == signal.SIGINT:
                force.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        # gunicorn's jitter: each worker draws its own limit, so they do not all recycle at once.
        limit = config.max_requests + random.randint(0, config.max_requests_jitter)
        try:
            await server.serve(
                config, shutdown=shutdown, force=force, sock=context.sockets,
                ready=lambda host, port: context.ready(),
                metrics=Metrics.for_worker(context.metrics_dir, context.slot),
                max_requests=limit if config.max_requests else 0,
                on_max_requests=context.recycle,
            )
        except tls.TLSError as exc:  # a renewed certificate that is broken: the reload fails
            server.log.critical("%s", exc)
            return 2
        return 130 if force.is_set() else 0

    return server.run(config, main=main)


@dataclass
class _Worker:
    slot: int
    pid: int
    ready_fd: int
    started: float
    ready: bool = False
    retiring: bool = False  # sent SIGTERM on purpose: its exit is not a failure


@dataclass
class _Slot:
    sockets: list[socket.socket]  # the same list in every slot when the listeners are shared
    failures: int = 0
    restart_at: float | None = None
    workers: list[_Worker] = field(default_factory=list)

    def serving(self) -> list[_Worker]:
        return [w for w in self.workers if not w.retiring]


class Supervisor:
    """Runs `count` workers until a signal stops them; `run()` returns the exit status.

    `worker_main` is what each child runs (default: the asyncio server); tests pass their own
    to make a worker that crashes.
    """

    def __init__(self, config: Config, count: int, worker_main: WorkerMain = serve_worker) -> None:
        self.config = config
        self.count = count
        self.worker_main = worker_main
        self.slots: list[_Slot] = []
        # tmpfs when there is one: the workers' counter pages are then never written to disk.
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="calcserve-metrics-", dir=shm))
        self.selector = selectors.DefaultSelector()
        self.wakeup_r, self.wakeup_w = os.pipe()
        self.stopping = False
        self.stop_deadline = float("inf")
        self.exit_status = 0
        self.announced = False
        self.reload_queue: list[int] = []
        self.reload_pending: _Worker | None = None  # the new worker we wait on before retiring
        self.listeners: list[Listeners] = []
        self.reloading = False  # a SIGHUP reload (not only --max-requests replacements) runs

    # -- setup --------------------------------------------------------------------------------

    def _bind(self) -> None:
        config = self.config
        first = open_listeners(config, reuse_port=True)
        self.listeners.append(first)
        for _ in range(self.count):
            if first.shared or not self.slots:
                self.slots.append(_Slot(first.sockets))
                continue
            # Port 0: the first slot picked the port; the others join it.
            port = first.sockets[0].getsockname()[1]
            more = open_listeners(config.with_changes(port=port), reuse_port=True)
            self.listeners.append(more)
            self.slots.append(_Slot(more.sockets))

    def _close_listeners(self) -> None:
        for listeners in self.listeners:
            listeners.close()  # removes the --uds socket file, if it is still ours

    def run(self) -> int:
        """Start the workers and supervise them until stopped; returns the exit status."""
        try:
            self._bind()
        except OSError as exc:
            log.critical("%s", exc)
            self._close_listeners()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            return 1
        os.set_blocking(self.wakeup_w, False)
        os.set_blocking(self.wakeup_r, False)
        signal.set_wakeup_fd(self.wakeup_w)
        for signum in _SIGNALS:
            signal.signal(signum, _note_signal)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, None)
        try:
            for index in range(self.count):
                self._spawn(index)
            self._loop()
        finally:
            signal.set_wakeup_fd(-1)
            self._close_listeners()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return self.exit_status

    # -- the loop -----------------------------------------------------------------------------

    def _loop(self) -> None:
        while not (self.stopping and not self._live()):
            for key, _ in self.selector.select(self._timeout()):
                if key.data is None:
                    self._on_signals()
                else:
                    self._on_ready(key.data)
            self._on_time()

    def _timeout(self) -> float:
        """Seconds until the next timer (a restart, the reload's or the stop's deadline)."""
        due = [s.restart_at for s in self.slots if s.restart_at is not None]
        due.append(self.stop_deadline)
        if self.reload_pending is not None:
            due.append(self.reload_pending.started + READY_TIMEOUT)
        # A periodic wake-up as well, in case a SIGCHLD byte was lost to a full wakeup pipe.
        return max(0.0, min(min(due) - time.monotonic(), 5.0))

    def _live(self) -> list[_Worker]:
        return [w for slot in self.slots for w in slot.workers]

    def _on_signals(self) -> None:
        try:
            data = os.read(self.wakeup_r, 512)
        except BlockingIOError:
            return
        for signum in data:
            if signum == signal.SIGCHLD:
                self._reap()
            elif signum in (signal.SIGTERM, signal.SIGINT):
                self._stop(signum)
            elif signum == signal.SIGHUP:
                self._reload()

    def _on_time(self) -> None:
        self._reap()
        now = time.monotonic()
        if self.stopping:
            if now >= self.stop_deadline:
                for worker in self._live():
                    log.error("worker %d did not exit in time: SIGKILL", worker.pid)
                    _kill(worker.pid, signal.SIGKILL)
                self.stop_deadline = float("inf")
            return
        for index, slot in enumerate(self.slots):
            if slot.restart_at is not None and now >= slot.restart_at:
                slot.restart_at = None
                self._spawn(index)
        pending = self.reload_pending
        if pending is not None and not pending.ready and now >= pending.started + READY_TIMEOUT:
            log.error("reload: new worker %d not ready after %g s; keeping the old workers",
                      pending.pid, READY_TIMEOUT)
            pending.retiring = True
            _kill(pending.pid, signal.SIGKILL)
            self._abandon_reload()

    # -- workers ------------------------------------------------------------------------------

    def _spawn(self, index: int) -> None:
        slot = self.slots[index]
        ready_r, ready_w = os.pipe()
        # Block our signals across fork so the child cannot run the supervisor's handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                os.close(ready_r)
                self._child(index, ready_w)  # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        os.close(ready_w)
        worker = _Worker(index, pid, ready_r, time.monotonic())
        slot.workers.append(worker)
        self.selector.register(ready_r, selectors.EVENT_READ, worker)
        log.info("worker %d started (slot %d)", pid, index)

    def _child(self, index: int, ready_w: int) -> None:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum in _SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            self.selector.close()
            os.close(self.wakeup_r)
            os.close(self.wakeup_w)
            own = self.slots[index].sockets
            for slot in self.slots:
                for worker in slot.workers:
                    os.close(worker.ready_fd)
                if slot.sockets is not own:
                    _close_all(slot.sockets)
            parent = os.getppid()
            _die_with_parent()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
            if os.getppid() != parent:  # the supervisor died before we asked to follow it
                os._exit(1)

            def tell(message: bytes) -> None:  # the pipe closes when this process exits
                with contextlib.suppress(OSError):
                    os.write(ready_w, message)

            context = WorkerContext(index, own, self.metrics_dir, lambda: tell(_READY),
                                    lambda: tell(_RECYCLE))
            code = self.worker_main(self.config, context)
            if os.getppid() != parent:  # orphaned: nobody is left to remove the directory
                shutil.rmtree(self.metrics_dir, ignore_errors=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _on_ready(self, worker: _Worker) -> None:
        if worker not in self.slots[worker.slot].workers:
            return  # reaped earlier in this batch of events: its descriptor is closed
        try:
            data = os.read(worker.ready_fd, 16)
        except OSError:
            data = b""
        if not data:  # the worker exited (SIGCHLD tells the rest)
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(worker.ready_fd)
            return
        if _RECYCLE in data:
            self._recycle(worker)
        if _READY not in data or worker.ready:
            return
        worker.ready = True
        if not self.announced and all(s.serving() and s.serving()[0].ready for s in self.slots):
            self.announced = True
            log.info("%d workers ready", self.count)
            url = self.listeners[0].url(tls.enabled(self.config))
            print(f"listening on {url}", flush=True)
        if worker is self.reload_pending:
            self.reload_pending = None
            for old in self.slots[worker.slot].workers:
                if old is not worker and not old.retiring:
                    self._retire(old)
            self._reload_next()

    def _retire(self, worker: _Worker) -> None:
        worker.retiring = True
        _kill(worker.pid, signal.SIGTERM)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._on_exit(pid, status)

    def _on_exit(self, pid: int, status: int) -> None:
        for index, slot in enumerate(self.slots):
            for worker in slot.workers:
                if worker.pid == pid:
                    break
            else:
                continue
            slot.workers.remove(worker)
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(worker.ready_fd)
            os.close(worker.ready_fd)
            try:
                metrics_module.retire_worker(self.metrics_dir, pid)
            except OSError:
                log.exception("could not fold the metrics of worker %d", pid)
            how = _describe(status)
            if worker.retiring or self.stopping:
                log.info("worker %d (slot %d) %s", pid, index, how)
                return
            log.error("worker %d (slot %d) %s unexpectedly", pid, index, how)
            if worker is self.reload_pending:
                log.error("reload: new worker for slot %d failed; keeping the old workers", index)
                self._abandon_reload()
            if slot.serving():  # another worker (the old one, mid-reload) still serves the slot
                return
            lived = time.monotonic() - worker.started
            slot.failures = 1 if lived >= STABLE_SECONDS else slot.failures + 1
            if slot.failures >= MAX_FAILURES:
                log.critical(
                    "slot %d: %d workers in a row died within %g s of starting (last: %s); "
                    "crash loop, giving up", index, slot.failures, STABLE_SECONDS, how)
                self.exit_status = EXIT_CRASH_LOOP
                self._stop(signal.SIGTERM, "crash loop")
                return
            delay = min(BACKOFF_MAX, BACKOFF_MIN * 2 ** (slot.failures - 1))
            log.warning("restarting slot %d in %.1f s", index, delay)
            slot.restart_at = time.monotonic() + delay
            return
        # Not one of ours (a grandchild re-parented to us, say): nothing to do.

    # -- stop and reload -----------------------------------------------------------------------

    def _stop(self, signum: int, reason: str = "") -> None:
        if self.stopping:
            if signum == signal.SIGINT:  # second Ctrl-C: the workers' "exit now"
                for worker in self._live():
                    _kill(worker.pid, signal.SIGINT)
            return
        log.info("%s: stopping %d workers (grace %g s)", reason or signal.Signals(signum).name,
                 len(self._live()), self.config.graceful_timeout)
        self.stopping = True
        self.stop_deadline = time.monotonic() + self.config.graceful_timeout + KILL_MARGIN
        self.reload_queue.clear()
        self.reload_pending = None
        for slot in self.slots:
            slot.restart_at = None
        for worker in self._live():
            worker.retiring = True
            _kill(worker.pid, signal.SIGTERM)
        # Our copies of the listening sockets go too: once the workers close theirs, a new
        # client is refused at once (a load balancer moves on) instead of queueing for nobody.
        for slot in self.slots:
            _close_all(slot.sockets)

    def _reload(self) -> None:
        if self.stopping:
            return
        if self.reloading:
            log.info("SIGHUP: a reload is already running; ignored")
            return
        log.info("SIGHUP: replacing %d workers one by one", self.count)
        self.reloading = True
        # Replacements for --max-requests in progress are overtaken: every slot gets a worker
        # forked after this signal (new code, a renewed certificate).
        self.reload_queue = list(range(self.count))
        if self.reload_pending is None:
            self._reload_next()

    def _abandon_reload(self) -> None:
        self.reload_pending = None
        self.reload_queue.clear()
        self.reloading = False

    def _recycle(self, worker: _Worker) -> None:
        """--max-requests: replace `worker` as a reload would, after any reload in progress."""
        if self.stopping or worker.retiring or worker not in self.slots[worker.slot].serving():
            return
        if worker.slot in self.reload_queue or (
                self.reload_pending is not None and self.reload_pending.slot == worker.slot):
            return  # already being replaced
        log.info("worker %d (slot %d) answered its --max-requests: replacing it", worker.pid,
                 worker.slot)
        self.reload_queue.append(worker.slot)
        if self.reload_pending is None:
            self._reload_next()

    def _reload_next(self) -> None:
        while self.reload_queue and not self.stopping:
            index = self.reload_queue.pop(0)
            if self.slots[index].restart_at is not None:
                continue  # that slot is restarting anyway: its new worker is new code
            self._spawn(index)
            self.reload_pending = self.slots[index].workers[-1]
            return
        if not self.stopping:
            log.info("reload complete" if self.reloading else "worker replaced")
        self.reloading = False


def _note_signal(signum: int, frame: object) -> None:
    """Handlers do nothing: set_wakeup_fd delivers the signal number to the select loop."""


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _die_with_parent() -> None:
    """Linux: have the kernel send us SIGTERM when the supervisor exits."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def run(config: Config, count: int, worker_main: WorkerMain = serve_worker) -> int:
    """Entry point for `python -m app --workers N`: supervise until a signal; exit status."""
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return Supervisor(config, count, worker_main).run()


def _close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()
