"""What the four study servers share, so that each of their files holds only its model.

- The command line (`--host`, `--port`, the three timeouts) and the `listening on` line.
- `Session`: one connection's HTTP state over the shared core (`app.protocol.Connection` and
  `app.routes.Routes`). A driver hands it the bytes it read and writes out what piles up in
  `session.out`; the session decides when the connection is done and when it times out. Every
  driver therefore maps protocol errors, timeouts and handler crashes in exactly the same way.
- `serve_blocking`: the plain blocking loop that both thread-based models run per connection.
- The calculation pool (`app.pool`): `make_pool` from the `--calc-*` options; a session hands
  a costly calculation to it and waits, reading nothing, until `resume()` (the thread models
  block on the ticket; the event loops are told through a `Mailbox` in their select set).
- Signals: the blocking models turn SIGINT/SIGTERM into a `Stop` exception in the main thread
  (exactly how Python delivers Ctrl-C as KeyboardInterrupt); the event loops use a self-pipe
  (`Wakeup`) so that a sleeping select wakes up at once.

Strategy: output is produced only while `session.out` is below `HIGH_WATER`, and a driver reads
only while `session.wants_input`. A client that pipelines requests but never reads the answers
therefore stops being read from; its memory cost is bounded by one read, one response and the
high-water mark, not by what it manages to send.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Final

from app.calculator import INLINE_BUDGET
from app.config import CALC_BACKLOG, CALC_CLIENT_QUEUE, CALC_TIMEOUT, calc_worker_count
from app.listen import AcceptFailures
from app.pool import CalcPool, Ticket, default_workers
from app.protocol import (
    CLOSED,
    CONTINUE_BYTES,
    Connection,
    ExpectContinue,
    Phase,
    ProtocolError,
    Request,
    Response,
    error_response,
    http_date,
    timeout_error,
)
from app.routes import Deferred, Routes, internal_error_response, load_assets
from app.work import CLIENT_SHARE, Shed

log = logging.getLogger("legacy")

RECV_SIZE = 64 * 1024  # bytes per recv; the post used 1024, which changes nothing about framing
HIGH_WATER = 64 * 1024  # pending output that stops reading; asyncio's default write high-water
BACKLOG = socket.SOMAXCONN  # socketserver's default of 5 drops SYNs under a burst of 200 clients
STOP_GRACE = 3.0  # seconds busy connections get to finish after SIGTERM; the harness allows 15
SWEEP_INTERVAL = 0.25  # event loops check deadlines this often at least; the most a timeout is late
DRAIN_LIMIT = 1024 * 1024  # unread input we discard before close so the kernel sends FIN, not RST

# Legacy defaults (contract): header 10 s (nginx client_header_timeout is 60 s, slowloris needs
# far less), keep-alive 5 s (Apache KeepAliveTimeout), body 30 s (a 1 MiB body at ~35 KB/s).
HEADER_TIMEOUT = 10.0
KEEPALIVE_TIMEOUT = 5.0
BODY_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Timeouts:
    header: float = HEADER_TIMEOUT  # first byte to blank line; also a new client's silence
    keepalive: float = KEEPALIVE_TIMEOUT  # idle between requests
    body: float = BODY_TIMEOUT  # head to end of body; also a write that makes no progress


@dataclass(frozen=True, slots=True)
class PoolOptions:
    workers: int  # 0: compute on the serving thread
    timeout: float = CALC_TIMEOUT
    client_queue: int = CALC_CLIENT_QUEUE
    backlog: int = CALC_BACKLOG


@dataclass(frozen=True, slots=True)
class Config:
    host: str
    port: int
    timeouts: Timeouts
    pool: PoolOptions


def make_parser(description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(description or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=HEADER_TIMEOUT,
        metavar="S",
        help="a started request head must be complete within S seconds (else 408)",
    )
    parser.add_argument(
        "--keepalive-timeout",
        type=float,
        default=KEEPALIVE_TIMEOUT,
        metavar="S",
        help="close a connection idle between requests after S seconds",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=BODY_TIMEOUT,
        metavar="S",
        help="a body must arrive, and a reader must make progress, within S seconds",
    )
    # The calculation pool, with python -m app's names and defaults (app/config.py).
    parser.add_argument(
        "--calc-workers", type=calc_worker_count, default=None, metavar="N|auto",
        help="calculation worker processes for expressions too costly to compute while others "
        "wait; 0 computes everything inline; auto (the default) = the CPUs we may use",
    )
    parser.add_argument(
        "--calc-timeout", type=float, default=CALC_TIMEOUT, metavar="S",
        help="a pooled calculation's worker is killed after S seconds (422 limit error)",
    )
    parser.add_argument(
        "--calc-client-queue", type=int, default=CALC_CLIENT_QUEUE, metavar="N",
        help="costly calculations one client may have queued or running (then 429)",
    )
    parser.add_argument(
        "--calc-backlog", type=int, default=CALC_BACKLOG, metavar="N",
        help="costly calculations waiting in all (then 503)",
    )
    return parser


def config_from(args: argparse.Namespace) -> Config:
    timeouts = Timeouts(args.header_timeout, args.keepalive_timeout, args.body_timeout)
    if min(timeouts.header, timeouts.keepalive, timeouts.body) <= 0:
        raise SystemExit("timeouts must be positive")
    workers = default_workers() if args.calc_workers is None else args.calc_workers
    pool = PoolOptions(workers, args.calc_timeout, args.calc_client_queue, args.calc_backlog)
    if not pool.timeout > 0 or pool.client_queue < 1 or pool.backlog < 1:
        raise SystemExit("--calc-timeout must be positive, the queue bounds at least 1")
    return Config(args.host, args.port, timeouts, pool)


def make_pool(options: PoolOptions) -> CalcPool | None:
    """The calculation pool the options ask for, started; None to compute inline."""
    if options.workers == 0:
        return None
    pool = CalcPool(options.workers, timeout=options.timeout,
                    client_queue=options.client_queue, backlog=options.backlog)
    pool.start()
    return pool


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def listen(config: Config) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    return socket.create_server((config.host, config.port), family=family, backlog=BACKLOG)


def announce(listener: socket.socket) -> None:
    """Print the one line that tests and the benchmark wait for (DESIGN.md)."""
    host, port = listener.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    print(f"listening on http://{host}:{port}", flush=True)


# A failed accept, reported at most every ACCEPT_REPORT_INTERVAL; the driver then pauses
# accepting for ACCEPT_RETRY (the asyncio mode does the same, app/server.py: _Acceptor).
accept_failed = AcceptFailures(log, logging.WARNING).report


def make_routes() -> Routes:
    return Routes(load_assets())


_date_cache: tuple[int, bytes] = (0, b"")


def current_date() -> bytes:
    """The Date header value, formatted once per second (swapping a tuple is thread-safe)."""
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, http_date(second))
    return _date_cache[1]


class Session:
    """One connection's protocol state: feed it bytes, write out `out`, obey `deadline`.

    For drivers: `received(data)` (b"" for EOF), `sent(count)`, `expire()` once `deadline`
    (a `time.monotonic()` value) has passed, `stop()` when the server is shutting down.
    Read while `wants_input`; write while `out` is non-empty; close once `finished`:
    with `close_gently`, or with `close_abruptly` when `aborted` (reset, stalled reader).

    With a `pool`, a costly calculation goes there as the `client`'s: `computing` is its ticket
    until the driver calls `resume()` once the ticket is done (a thread blocks on
    `computing.wait()`; an event loop passes `notify`, which the pool calls from its thread).
    After a 429 the session is `parked` until `parked_until` (its Retry-After, at most half the
    keep-alive timeout, so a request already sent is read before the connection could time
    out), or until its client has room in the pool: `wants_input` is False meanwhile, and the
    drivers read nothing more from it (see app/server.py's `_wait_for_room` for why).
    """

    def __init__(
        self,
        routes: Routes,
        timeouts: Timeouts,
        pool: CalcPool | None = None,
        client: str = "-",
        notify: Callable[[Ticket], None] | None = None,
    ) -> None:
        self.conn = Connection()
        self.routes = routes
        self.timeouts = timeouts
        self.pool = pool
        self.client = client
        self.notify = notify
        self.computing: Ticket | None = None
        self._deferred: tuple[Request, Deferred] | None = None
        self.parked_until: float | None = None
        self.out = bytearray()
        self.done = False  # no more requests: close once `out` is flushed
        self.aborted = False  # drop the output and reset (peer reset us, or stopped reading)
        self.eof = False
        self.stopping = False
        self._requests = 0
        self._phase = Phase.IDLE
        self._since = self._progress = time.monotonic()

    @property
    def wants_input(self) -> bool:
        return (not (self.done or self.eof) and len(self.out) < HIGH_WATER
                and self.computing is None and not self.parked)

    @property
    def parked(self) -> bool:
        """Answered 429 and still waiting: before `parked_until` (the driver ends it sooner,
        with `unpark`, when its client has room in the pool)."""
        until = self.parked_until
        if until is None:
            return False
        if time.monotonic() < until and not self.stopping:
            return True
        self.parked_until = None
        return False

    def unpark(self) -> None:
        self.parked_until = None

    def release_if_room(self, released: set[str]) -> None:
        """Event loops, once a turn: a parked session reads again if its client has room, one
        per client per turn (`released` holds the clients let go this turn), so a client's
        hundreds of refused connections do not all read, and all be refused again, each time
        one place frees."""
        pool = self.pool
        if (self.parked and pool is not None and self.client not in released
                and pool.has_room(self.client)):
            self.unpark()
            released.add(self.client)

    @property
    def idle(self) -> bool:
        """Between requests, with nothing to write: closing now loses nothing."""
        return self._phase is Phase.IDLE and not self.out

    @property
    def finished(self) -> bool:
        return self.aborted or (self.done and not self.out)

    @property
    def deadline(self) -> float:
        if self.computing is not None and not self.out:  # the pool always answers
            return math.inf
        if self.out:  # the peer must keep reading: no progress for a body timeout is a stall
            return self._progress + self.timeouts.body
        if self._phase is Phase.HEAD:
            return self._since + self.timeouts.header
        if self._phase is Phase.BODY:
            return self._since + self.timeouts.body
        # IDLE (or CLOSED with nothing left to write): a new client gets the header timeout.
        idle = self.timeouts.keepalive if self._requests else self.timeouts.header
        return self._since + idle

    def received(self, data: bytes) -> None:
        if self.done:
            return  # e.g. the tail of a pipeline after `Connection: close`; discard it
        self.eof = not data
        self.conn.receive_data(data)
        self._advance()

    def sent(self, count: int) -> None:
        del self.out[:count]
        self._progress = time.monotonic()
        if not self.out and self._phase is Phase.IDLE:
            self._since = self._progress  # the keep-alive wait starts once the answer is out
        self._advance()

    def expire(self) -> None:
        """The deadline passed: 408 if a request was under way, else close silently."""
        if self.out:  # the peer stopped reading: drop its answers, reset the connection
            self.out.clear()
            self.done = self.aborted = True
        elif self._phase in (Phase.HEAD, Phase.BODY):
            head = self._phase is Phase.HEAD
            limit = self.timeouts.header if head else self.timeouts.body
            self._fail(timeout_error(self._phase, limit))
        else:  # idle: nothing to say, just close
            self.done = True

    def stop(self) -> None:
        """Server shutdown: an idle connection closes now, a busy one after its next response."""
        self.stopping = True
        if self.idle:
            self.done = True

    def resume(self) -> None:
        """The pool has answered `computing`: send its response, then go on with the input."""
        ticket, deferred = self.computing, self._deferred
        assert ticket is not None and ticket.outcome is not None and deferred is not None
        self.computing = self._deferred = None
        request, work = deferred
        try:
            response = work.render(ticket.outcome)
        except Exception:
            log.exception("rendering a calculation failed for %s", request.target)
            response = internal_error_response()
        if self.stopping:
            response.close = True
        self._queue(self.conn.send(request, response, date=current_date()))
        self._advance()

    def _advance(self) -> None:
        while not self.done and len(self.out) < HIGH_WATER and self.computing is None:
            try:
                event = self.conn.next_event()
            except ProtocolError as err:
                self._fail(err)
                break
            if isinstance(event, Request):
                self._requests += 1
                response = self._respond(event)
                if response is None:
                    break  # in the pool: `resume` goes on from here
                self._queue(self.conn.send(event, response, date=current_date()))
            elif isinstance(event, ExpectContinue):
                self._queue(CONTINUE_BYTES)
            elif event is CLOSED:
                self.done = True
            else:  # NEED_DATA
                self.done = self.eof  # cannot happen per the contract; never wait on a dead peer
                break
        if self.conn.phase is not self._phase:
            self._phase = self.conn.phase
            self._since = time.monotonic()

    def _respond(self, request: Request) -> Response | None:
        """The response, or None when the calculation went to the pool (`computing`)."""
        pool = self.pool
        try:
            if pool is None:
                response = self.routes.handle(request)
            else:  # cheap work inline, whoever asks; costly work to the pool
                answer = self.routes.handle(request, INLINE_BUDGET)
                if isinstance(answer, Deferred):
                    ticket = pool.submit(self.client, answer.job, self.notify)
                    if not isinstance(ticket, Shed):
                        self.computing, self._deferred = ticket, (request, answer)
                        return None
                    if ticket.reason == CLIENT_SHARE:
                        self.parked_until = time.monotonic() + min(
                            ticket.retry_after, self.timeouts.keepalive / 2)
                    answer = answer.render(ticket)
                response = answer
        except Exception:
            log.exception("handler failed for %s %s", request.method, request.target)
            response = internal_error_response()
        if self.stopping:
            response.close = True
        return response

    def _fail(self, err: ProtocolError) -> None:
        self._queue(self.conn.send(None, error_response(err), date=current_date()))
        self.done = True

    def _queue(self, data: bytes) -> None:
        if not self.out:
            self._progress = time.monotonic()
        self.out += data


def close_gently(sock: socket.socket) -> None:
    """Discard unread input, send FIN, close.

    Closing a socket with unread bytes makes the kernel answer with RST and drop what is still
    queued for sending, so a client that pipelined past an error could lose the error response.
    """
    with contextlib.suppress(OSError):
        sock.setblocking(False)
        for _ in range(DRAIN_LIMIT // RECV_SIZE):
            if not sock.recv(RECV_SIZE):
                break
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    sock.close()


def no_delay(sock: socket.socket) -> None:
    """Turn off Nagle's algorithm (TCP_NODELAY), as uvloop does on every connection: an answer
    that leaves in more than one send (a large page after a partial send) must not wait for the
    client's delayed ACK before its last small segment goes."""
    with contextlib.suppress(OSError):  # not a TCP socket: nothing to turn off
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def close_abruptly(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the kernel drops what is still queued for a peer that
    stopped reading, instead of trickling it out for minutes to an orphaned socket."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


ROOM_POLL: Final = 0.25  # seconds: how often a thread waiting for room checks for a stop


def serve_blocking(sock: socket.socket, session: Session) -> None:
    """Serve one connection with blocking calls: the loop both thread-based models run.

    The socket timeout is the session's deadline, so a silent client costs a sleeping thread and
    no CPU. `sendall` blocks while the client does not read, and then this thread does not read
    either: that is the backpressure. (Since Python 3.5 a timeout bounds the whole `sendall`, so
    each batch of answers must be taken within one body timeout.) Returns when the connection
    is done; never raises OSError.
    """
    try:
        while not session.finished:
            if session.computing is not None:  # in the pool: sleep, GIL released, until done
                session.computing.wait()
                session.resume()
                continue
            if session.out:
                sock.settimeout(session.timeouts.body)
                sock.sendall(session.out)  # TimeoutError if the peer stalls for a body timeout
                session.sent(len(session.out))
                continue
            remaining = session.deadline - time.monotonic()
            if remaining <= 0:
                session.expire()
                continue
            if session.parked and session.parked_until is not None and session.pool is not None:
                # Answered 429: the next request waits for room, so a client re-asking at once
                # on many connections does not have this thread refuse it in a loop, holding
                # the GIL the pool's thread needs. A stop is noticed within ROOM_POLL.
                left = session.parked_until - time.monotonic()
                if session.pool.wait_for_room(session.client, max(0.0, min(left, ROOM_POLL))):
                    session.unpark()
                continue
            sock.settimeout(remaining)
            try:
                data = sock.recv(RECV_SIZE)
            except TimeoutError:
                session.expire()
                continue
            session.received(data)
    except OSError:  # reset by peer, broken pipe, a stalled sendall: nothing more to say to it
        session.aborted = True
    if session.aborted:
        close_abruptly(sock)
    else:
        close_gently(sock)


class Connections:
    """The blocking models' registry of open connections, so a stop can wake every thread.

    `serve(sock)` runs in a connection's own thread (or child process); `stop()` and
    `wait(timeout)` are for the main thread. Shutting down the read side of an idle
    connection makes its blocked `recv` return b"" at once, so it closes; a busy one finishes
    its response with `Connection: close`, or runs into its timeout.
    """

    def __init__(self, routes: Routes, timeouts: Timeouts, pool: CalcPool | None = None) -> None:
        self.routes = routes
        self.timeouts = timeouts
        self.pool = pool
        # Reentrant: in a forked child the signal handler runs on the thread that may hold it.
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._open: dict[socket.socket, Session] = {}
        self._stopping = False

    def serve(self, sock: socket.socket, client: str = "-") -> None:
        no_delay(sock)
        pool = self.pool if self.pool is not None and self.pool.pid == os.getpid() else None
        session = Session(self.routes, self.timeouts, pool, client)
        with self._lock:
            self._open[sock] = session
            if self._stopping:  # accepted just as the stop began: serve nothing more
                session.stopping = True
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RD)
        try:
            serve_blocking(sock, session)
        finally:
            with self._lock:
                del self._open[sock]
                self._idle.notify_all()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            for sock, session in self._open.items():
                session.stopping = True  # read by the connection's own thread
                if session.idle:  # wake it with a fake EOF; busy ones finish (or time out)
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RD)

    def wait(self, timeout: float) -> bool:
        with self._lock:
            return self._idle.wait_for(lambda: not self._open, timeout)


class Stop(BaseException):
    """SIGINT or SIGTERM arrived (a BaseException, like KeyboardInterrupt, so nothing eats it)."""


def raise_stop_on_signals() -> None:
    """Make SIGINT/SIGTERM raise `Stop` in the main thread; a second signal kills outright."""

    def handler(signum: int, frame: FrameType | None) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        raise Stop(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


class Wakeup:
    """The self-pipe trick: a signal handler writes a byte that a select loop is watching.

    Without it a signal would interrupt select, run the handler, and then (PEP 475) put select
    straight back to sleep for the rest of its timeout.
    """

    def __init__(self) -> None:
        self.reader, self._writer = socket.socketpair()
        self.reader.setblocking(False)
        self._writer.setblocking(False)
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        with contextlib.suppress(OSError):
            self._writer.send(b"\0")

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            self.reader.recv(4096)

    def close(self) -> None:
        self.reader.close()
        self._writer.close()
