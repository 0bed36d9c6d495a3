"""The production mode: asyncio streams over the shared sans-IO HTTP/1.1 core.

Model: one event loop (uvloop when importable), one task per connection. A waiting connection is
a suspended coroutine plus a transport, a few KB, so ten thousand idle keep-alive clients cost
tens of MB and no threads. Everything HTTP is in `app.protocol`; everything the calculator
answers is in `app.routes`; this module only moves bytes, owns time and limits, and shuts down
politely. Where it breaks: one core per process (run several with a supervisor), and anything
that computes for long on the loop stalls every client of that process. So the loop never
does: a calculation that would pass the inline budget comes back from routes as a `Deferred`,
goes to the calculation pool (`app.pool`, worker processes with fair per-client queues), and
the connection's coroutine awaits a future that the pool's thread settles through
`call_soon_threadsafe` (a byte on the loop's own wake-up pipe). Meanwhile the loop serves
everyone else, and that connection reads nothing more until its answer is written.

Connections are what `asyncio.start_server` makes (a StreamReader/StreamWriter pair from the
stdlib's StreamReaderProtocol, one task running our handler), but we accept them ourselves, in
batches (`_Acceptor`): uvloop's server accepts one connection per loop iteration, and under load
a burst of new clients queued behind it for seconds (see ACCEPT_BATCH). With TLS (app/tls.py),
`connect_accepted_socket` also runs the handshake before the handler starts (the handshake and
the first request head share one --header-timeout); the handler then reads and writes plaintext
as ever. Where the
listening sockets come from (TCP, a Unix socket, systemd) is app/listen.py's business, and who
the client is behind a proxy app/forwarded.py's (`_Client.client_of`).

Strategy (the hot path, per connection):
- Read up to 64 KiB, feed it to `Connection`, answer every request the chunk completes, and
  write the joined responses once. Drain only when the transport's buffer passes its high-water
  mark, and never read again before that drain returns: a client that pipelines thousands of
  requests and reads nothing fills its socket buffers and stalls itself, while our memory stays
  bounded by the reader limit plus the high-water mark plus one response.
- Writes are corked per loop iteration: the first answer of an iteration is written at once,
  the others when every connection ready in it has been answered, as one burst (what a select()
  server's write pass does). Measured (wrk -c64 POST /calculate, pinned, /proc CPU): written one
  by one, each write woke the sleeping client through the loopback softirq, ~12 us of our sys
  time per request (perf: sock_def_readable under write()); corked, 87 -> 60 us per request
  (user 64 -> 50, sys 25 -> 9.5), and 1-connection latency unchanged.
- Time: one deadline (a float) per connection, checked by a shared timer wheel (one loop timer
  per 50 ms slot in use) that re-checks lazily when the deadline has moved on. A request only
  moves the float forward: no timer object per request (`asyncio.timeout` per read measured
  ~8 us here; the float store ~0), and none per connection. When a deadline passes, the wheel
  cancels the connection's task and the task decides by phase: idle -> close quietly; partial
  head or body -> 408 and close; unread output -> abort.
- Why streams and not a Protocol: DESIGN.md asks for streams, and the price is measured in the
  same benchmark run (scripts/bench.py, wrk -c64, pinned, CPU per request from /proc): a bare
  start_server streams server answering a constant response costs 15 us per request, a bare
  asyncio.Protocol 11 us. So the StreamReader copy and the task switch per read are ~4 us of
  the ~56 us a POST /calculate costs here; the rest is the calculator (~12 us on the corpus),
  routes (~5), the protocol core (~3) and the loop and system calls both ceilings pay too.
- Shutdown (SIGTERM/SIGINT or the injected event): stop accepting, close idle connections,
  mark the rest so their next response carries `Connection: close`, wait up to
  --graceful-timeout for them, then abort what is left.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import functools
import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final

import aiofiles
import aiofiles.os

from app import tls
from app.accesslog import AccessLog
from app.calculator import IMPLEMENTATION, INLINE_BUDGET
from app.config import Config
from app.forwarded import UNIX_PEER, Client, ProxyTrust
from app.forwarded import client as forwarded_client
from app.listen import (
    ACCEPT_RETRY,
    AcceptFailures,
    Listeners,
    open_listeners,
)
from app.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from app.metrics import Metrics
from app.pool import CalcPool, Ticket
from app.protocol import (
    CLOSED,
    CONTINUE_BYTES,
    NEED_DATA,
    Connection,
    Phase,
    ProtocolError,
    Request,
    Response,
    error_response,
    http_date,
    render,
    timeout_error,
)
from app.routes import (
    STATIC_DIR,
    Asset,
    Deferred,
    Routes,
    build_assets,
    internal_error_response,
)
from app.work import CLIENT_SHARE, SATURATED, Outcome, Shed

log = logging.getLogger("calcserve")

# 64 KiB reads: the size of a loopback socket's default receive window and uvloop's own read
# buffer; big enough that a pipelining client's requests arrive in a handful of reads.
READ_SIZE: Final = 64 * 1024
# StreamReader limit: it stops reading the socket once it buffers 2x this, which is what pushes
# back on a client that floods us while we wait for it to read our output.
READER_LIMIT: Final = 64 * 1024
# Output high-water mark: drain (and stop reading) above it. 64 KiB is asyncio's default too;
# it is also the point at which a batch of pipelined responses is flushed mid-chunk.
WRITE_HIGH_WATER: Final = 64 * 1024
# After an error response we half-close and discard input for a moment before closing, so the
# client reads our answer instead of a reset (nginx: lingering_timeout 5 s, lingering_time 30 s).
LINGER_SECONDS: Final = 2.0
LINGER_BYTES: Final = 1024 * 1024
# File descriptors kept for the listening socket, logs, asset files and the loop itself.
FD_RESERVE: Final = 64
# Connections accepted per readiness event of a listening socket. Not libuv's own accept: since
# libuv 1.45 (PR #3696) uvloop's servers accept one connection per loop iteration, so behind a
# busy loop a burst of N new clients waits N iterations. Measured here (POST /calculate from 512
# fresh connections while the loop is saturated, ~30 ms per iteration): the last clients waited
# 1-3.7 s for their first answer, in 2 runs out of 8 under wrk; accepting in batches, none did.
# A bound, so that a connection flood cannot starve the clients already being served.
ACCEPT_BATCH: Final = 256
# On shutdown, a connection accepted but not yet heard from gets this long to send its request
# (it is normally in flight already: clients send right after connecting), then is closed.
DRAIN_FIRST_REQUEST_GRACE: Final = 1.0
# Timeouts fire up to this late: connections due within one slot share a loop timer.
TIMER_RESOLUTION: Final = 0.05


class _Wait(enum.Enum):
    """What a connection's task is suspended on; the timer's verdict depends on it."""

    BUSY = "busy"
    READING = "reading"
    WRITING = "writing"
    LINGERING = "lingering"
    COMPUTING = "computing"  # a costly calculation is in the pool


class _Interrupt(enum.Enum):
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"  # idle at shutdown: close quietly
    ABORT = "abort"  # graceful period over, or forced exit


ReadyCallback = Callable[[str, int], None]

# Over --max-connections: answered before reading anything, then closed.
_REFUSAL: Final = Response(
    503,
    [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", "1")],
    b"503 Service Unavailable: too many connections\n",
    close=True,
)


async def load_static_assets(directory: Path = STATIC_DIR) -> dict[str, Asset]:
    """Read every regular file directly in `directory` with aiofiles (off the event loop)."""
    names = await aiofiles.os.listdir(directory)

    async def read(name: str) -> tuple[str, bytes] | None:
        path = directory / name
        if not await aiofiles.os.path.isfile(path):
            return None
        async with aiofiles.open(path, "rb") as f:
            return name, await f.read()

    found = await asyncio.gather(*(read(name) for name in sorted(names)))
    return build_assets(dict(item for item in found if item is not None))


class _Acceptor:
    """Accepts connections from listening sockets, in batches, and hands each to asyncio streams.

    What `asyncio.start_server` does, minus one thing: the loop's own accept path (see
    ACCEPT_BATCH for why). Each accepted socket becomes a StreamReader/StreamWriter pair through
    `loop.connect_accepted_socket` and the stdlib's StreamReaderProtocol, exactly as
    `start_server` would build them, and `on_connection(reader, writer)` runs in its own task.

    With TLS (`certificates`), the handshake runs before `on_connection`, bounded by
    `handshake_timeout`, and `on_connection` is also told when the connection was accepted so
    that the handshake counts against the header timeout. At most `max_handshakes` run at
    once: a flood of clients that connect and stall costs descriptors up to that bound, and
    the connections beyond it are closed at once (nothing can be answered before a handshake).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: list[socket.socket],
        on_connection: Callable[..., Coroutine[Any, Any, None]],
        *,
        certificates: tls.Certificates | None = None,
        handshake_timeout: float = 0.0,
        max_handshakes: int = 0,
    ) -> None:
        self.loop = loop
        self.sockets = sockets
        self.on_connection = on_connection
        self.certificates = certificates
        self.handshake_timeout = handshake_timeout
        self.max_handshakes = max_handshakes
        self.connecting: set[asyncio.Task[Any]] = set()
        self.paused: list[socket.socket] = []
        self.retry: asyncio.TimerHandle | None = None
        self.failures = AcceptFailures(log, logging.ERROR)
        for sock in sockets:
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return  # everyone who was waiting is in
            except ConnectionAbortedError:
                continue  # reset while in the backlog: nothing to serve
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS, ENOMEM: back off, do not spin
                self._pause(listener, exc)
                return
            self._connect(sock)

    def _connect(self, sock: socket.socket) -> None:
        loop = self.loop
        reader = asyncio.StreamReader(limit=READER_LIMIT, loop=loop)
        certificates = self.certificates
        try:
            if certificates is None:
                protocol = asyncio.StreamReaderProtocol(reader, self.on_connection, loop=loop)
                connect = loop.connect_accepted_socket(lambda: protocol, sock)
            else:
                if len(self.connecting) >= self.max_handshakes:
                    sock.close()  # a handshake flood: the ones in progress are enough
                    return
                callback = functools.partial(self.on_connection, accepted=loop.time())
                protocol = asyncio.StreamReaderProtocol(reader, callback, loop=loop)
                connect = loop.connect_accepted_socket(
                    lambda: protocol, sock, ssl=certificates.context,
                    ssl_handshake_timeout=self.handshake_timeout,
                    ssl_shutdown_timeout=tls.SHUTDOWN_TIMEOUT)
            task = loop.create_task(connect)
        except Exception:  # cannot happen short of a broken loop; never lose the descriptor
            sock.close()
            raise
        self.connecting.add(task)
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[Any]) -> None:
        self.connecting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A failed TLS handshake lands here too: plain HTTP to the TLS port, a client that
            # stalled past the timeout, an unknown CA. Not our failure: closed, never logged
            # above debug (a port scanner must not flood the log).
            log.debug("could not set up an accepted connection: %s", task.exception())

    def _pause(self, listener: socket.socket, exc: OSError) -> None:
        self.loop.remove_reader(listener.fileno())
        self.paused.append(listener)
        if self.retry is None:
            self.retry = self.loop.call_later(ACCEPT_RETRY, self._resume)
        self.failures.report(exc)

    def _resume(self) -> None:
        self.retry = None
        paused, self.paused = self.paused, []
        for listener in paused:
            if listener.fileno() >= 0:
                self.loop.add_reader(listener.fileno(), self._accept, listener)

    async def close(self) -> None:
        """Stop accepting and close the listening sockets; connections accepted so far have
        registered with the server (their handler task has started) when this returns."""
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None
        for sock in self.sockets:
            if sock.fileno() >= 0:
                if sock not in self.paused:
                    self.loop.remove_reader(sock.fileno())
                sock.close()
        self.paused = []
        if self.connecting:
            # TLS handshakes in progress get the grace a fresh connection gets at shutdown;
            # a stalled one is then dropped (cancelling closes its socket).
            _, stalled = await asyncio.wait(self.connecting, timeout=DRAIN_FIRST_REQUEST_GRACE)
            for task in stalled:
                task.cancel()
            if stalled:
                await asyncio.gather(*stalled, return_exceptions=True)
        # connection_made created each handler's task; let it take its first step.
        await asyncio.sleep(0)


class _Server:
    """State shared by all connections of one listening server."""

    def __init__(
        self,
        config: Config,
        routes: Routes,
        loop: asyncio.AbstractEventLoop,
        metrics: Metrics | None = None,
        pool: CalcPool | None = None,
        *,
        scheme: str = "http",
        max_requests: int = 0,
        on_max_requests: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.routes = routes
        self.loop = loop
        self.metrics = metrics if metrics is not None else Metrics()
        self.pool = pool
        # Connections answered 429, per client host, waiting for room in the pool (room_for).
        self.room_waiters: dict[str, collections.deque[asyncio.Future[None]]] = {}
        self.scheme = scheme
        self.trust = ProxyTrust(config.forwarded_allow_ips, enabled=config.proxy_headers)
        # Worker recycling (--max-requests): counts down per request; at 0, on_max_requests
        # (the supervisor's handover) is called once.
        self.requests_left = max_requests if max_requests > 0 else math.inf
        self.on_max_requests = on_max_requests
        self.clients: set[_Client] = set()
        self.draining = False
        self.all_closed = asyncio.Event()
        self.date = b""
        self.access = (
            AccessLog(config.log_format, schedule=loop.call_soon) if config.access_log else None
        )
        self.timers = _TimerWheel(loop)
        # Clients whose responses wait for the end of this loop iteration (see _Client._respond).
        self.corked: list[_Client] = []
        self.batching = False
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tick()

    def _tick(self) -> None:
        """Refresh the cached Date header on each wall-clock second."""
        now = time.time()
        self.date = http_date(now)
        delay = 1.0 - (now % 1.0) + 0.001
        self._tick_handle = self.loop.call_at(self.loop.time() + delay, self._tick)

    async def room_for(self, host: str, timeout: float) -> None:
        """Return once `host` may have another calculation in the pool, or after `timeout` s.

        One waiter is woken per calculation of that client that ends (room_freed), in the
        order they came: a client's hundreds of refused connections do not all wake, and all
        be refused again, each time one place frees.
        """
        pool = self.pool
        if pool is None or timeout <= 0 or pool.has_room(host):
            return
        loop = self.loop
        waiter: asyncio.Future[None] = loop.create_future()
        waiters = self.room_waiters.setdefault(host, collections.deque())
        waiters.append(waiter)
        timer = loop.call_later(timeout, _settle_none, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if not waiter.done():
                waiter.cancel()  # interrupted (a timeout or shutdown): room_freed skips it
            while waiters and waiters[0].done():  # settled ones leave from the head
                waiters.popleft()
            if not waiters and self.room_waiters.get(host) is waiters:
                del self.room_waiters[host]

    def room_freed(self, host: str) -> None:
        """A calculation of `host` has ended: wake the first of its connections waiting."""
        waiters = self.room_waiters.get(host)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def start_batch(self) -> None:
        """From now until the end of this loop iteration, answers are corked (_Client._respond)."""
        self.batching = True
        self.loop.call_soon(self.flush_corked)

    def flush_corked(self) -> None:
        self.batching = False
        corked = self.corked
        if not corked:
            return
        self.corked = []
        for client in corked:
            try:
                client.uncork()
            except Exception:  # one broken transport must not keep the others' answers back
                log.exception("writing a response failed; closing the connection")
                client.transport.abort()

    def close(self) -> None:
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self.access is not None:
            self.access.flush()

    def count_requests(self, answered: int) -> None:
        self.requests_left -= answered
        if self.requests_left <= 0:
            self.requests_left = math.inf
            if self.on_max_requests is not None:
                self.on_max_requests()

    async def accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        accepted: float | None = None,
    ) -> None:
        """The connection handler (`_Acceptor`): one call, in its own task, per connection;
        `accepted` is when it was accepted, if that was before now (a TLS handshake)."""
        metrics = self.metrics
        # While draining, a connection accepted before the listener closed is still served
        # (one request, then close): under a supervisor's reload that client has no one else.
        if len(self.clients) >= self.config.max_connections:
            metrics.protocol_error(_REFUSAL.status)
            await _refuse(reader, writer, render(None, _REFUSAL, date=self.date))
            return
        client = _Client(self, reader, writer, accepted)
        self.clients.add(client)
        metrics.connection_opened()
        try:
            await client.run()
        finally:
            metrics.connection_closed()
            self.clients.discard(client)
            if self.draining and not self.clients:
                self.all_closed.set()

    def begin_drain(self) -> None:
        """Stop reusing connections: idle ones close now, busy ones after their response."""
        self.draining = True
        for client in list(self.clients):
            client.on_drain()
        if not self.clients:
            self.all_closed.set()

    def abort_all(self) -> None:
        for client in list(self.clients):
            client.interrupt(_Interrupt.ABORT)


async def _refuse(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: bytes
) -> None:
    """Answer 503 without reading the request, then close politely (never hang: bounded)."""
    try:
        writer.write(response)
        async with asyncio.timeout(LINGER_SECONDS / 2):
            await _linger(reader, writer)
    except (OSError, TimeoutError, asyncio.CancelledError):
        pass  # a refusal ends quietly however it ends, even when the server is going away
    finally:
        writer.close()


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close after our last response and discard input until EOF (bounded by the caller)."""
    if writer.can_write_eof():
        writer.write_eof()
    discarded = 0
    while discarded < LINGER_BYTES:
        data = await reader.read(READ_SIZE)
        if not data:
            break
        discarded += len(data)


class _TimerWheel:
    """Coarse timers for many connections: those due in the same slot share one loop timer.

    A connection costs a set entry here instead of a TimerHandle of its own (~600 bytes under
    uvloop), which matters at 10,000 idle keep-alive connections. Slots are TIMER_RESOLUTION
    wide, so a timeout fires up to that much late.
    """

    __slots__ = ("loop", "slots")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.slots: dict[int, set[_Client]] = {}

    def schedule(self, client: _Client, when: float) -> int:
        """Call `client.on_timer()` at about `when`; returns the slot key for `cancel`."""
        key = math.ceil(when / TIMER_RESOLUTION)
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = set()
            self.loop.call_at(key * TIMER_RESOLUTION, self._fire, key)
        slot.add(client)
        return key

    def cancel(self, client: _Client, key: int) -> None:
        slot = self.slots.get(key)
        if slot is not None:
            slot.discard(client)

    def _fire(self, key: int) -> None:
        for client in self.slots.pop(key, ()):
            client.on_timer()


# Verdicts of _Client._respond: what the connection does after a chunk of input is answered.
_READ_MORE: Final = 0
_DRAIN_THEN_RESPOND: Final = 1  # a long pipeline filled the output: drain, then parse on
_CLOSE: Final = 2
_CLOSE_LINGERING: Final = 3  # after an error response: half-close and discard input first
_AWAIT_JOB: Final = 4  # a calculation went to the pool: await it, then parse on


class _Client:
    """One accepted connection: its protocol state, its deadline, and its task.

    Idle connections are what a server holds most of, so per-connection state is kept small:
    slots, a shared timer wheel, and nothing of the last request left referenced while waiting.
    """

    __slots__ = (
        "_interrupt",
        "answered",
        "client",
        "conn",
        "deadline",
        "deferred",
        "peer",
        "penalty",
        "pending",
        "proxy",
        "reader",
        "server",
        "task",
        "timer_key",
        "timer_when",
        "transport",
        "waiting",
        "writer",
    )

    def __init__(
        self, server: _Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        accepted: float | None = None,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.conn = Connection()
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        self.waiting = _Wait.BUSY
        self.answered = 0  # responses written for parsed requests
        self.pending: bytes | None = None  # answers waiting for server.flush_corked
        self._interrupt: _Interrupt | None = None
        self.peer = _peer_host(writer)
        # Who this connection's requests come from (see client_of); the proxy's trust only
        # when the peer is trusted, so an untrusted connection never looks at a header.
        self.client = Client(self.peer, server.scheme)
        self.proxy = server.trust if server.trust.trusts(self.peer) else None
        # A request whose calculation went to the pool: it, its work, when its chunk started,
        # and its client (the pool's fairness key is the client's host).
        self.deferred: tuple[Request, Deferred, float, Client] | None = None
        # Answered 429: (its client's host, Retry-After); the next read waits for room first.
        self.penalty: tuple[str, int] | None = None
        # A fresh connection must send its first head within the header timeout, which the
        # TLS handshake (since `accepted`) counts against.
        started = server.loop.time() if accepted is None else accepted
        self.deadline = started + server.config.header_timeout
        self.timer_key = server.timers.schedule(self, self.deadline)
        self.timer_when = self.timer_key * TIMER_RESOLUTION

    def client_of(self, request: Request) -> Client:
        """The client `request` comes from: the peer, or whom a trusted proxy's Forwarded /
        X-Forwarded-For names (app.forwarded). What the access log shows and the key of
        per-client bounds."""
        proxy = self.proxy
        return self.client if proxy is None else forwarded_client(self.client, request, proxy)

    # -- time ---------------------------------------------------------------------------------

    def _set_deadline(self, deadline: float) -> None:
        """Move the deadline; the wheel is only touched when the deadline moves earlier."""
        self.deadline = deadline
        if deadline < self.timer_when:
            timers = self.server.timers
            timers.cancel(self, self.timer_key)
            self.timer_key = timers.schedule(self, deadline)
            self.timer_when = self.timer_key * TIMER_RESOLUTION

    def on_timer(self) -> None:
        if self.server.loop.time() < self.deadline - TIMER_RESOLUTION:
            # The deadline moved on since this check was scheduled: check again then.
            self.timer_key = self.server.timers.schedule(self, self.deadline)
            self.timer_when = self.timer_key * TIMER_RESOLUTION
            return
        self.timer_when = float("inf")
        self.interrupt(_Interrupt.TIMEOUT)

    def interrupt(self, why: _Interrupt) -> None:
        if self._interrupt is not None and why is not _Interrupt.ABORT:
            return
        self._interrupt = why
        self.task.cancel()

    def on_drain(self) -> None:
        if self.waiting is _Wait.READING and self.conn.phase is Phase.IDLE:
            if self.answered:  # idle keep-alive: close now (clients retry a reused connection)
                self.interrupt(_Interrupt.SHUTDOWN)
            else:  # just accepted: its request is on the way; a moment to arrive, then close
                self._set_deadline(
                    min(self.deadline, self.server.loop.time() + DRAIN_FIRST_REQUEST_GRACE))

    def uncork(self) -> None:
        """Write the answers held back for the end of the loop iteration, if any."""
        data = self.pending
        if data is not None:
            self.pending = None
            if not self.transport.is_closing():
                self.transport.write(data)

    def _take_interrupt(self) -> _Interrupt:
        """Called in an `except CancelledError`: ours to handle, or re-raise if it is not."""
        why = self._interrupt
        if why is None:
            raise asyncio.CancelledError
        self._interrupt = None
        self.task.uncancel()
        return why

    # -- the connection loop ------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if await self._serve():
                await self._linger()
        except asyncio.CancelledError:
            if self._take_interrupt() is _Interrupt.ABORT:
                self.transport.abort()
        except OSError:  # reset by peer, broken pipe: nothing left to say
            self.transport.abort()
        except Exception:
            log.exception("connection handler failed; closing the connection")
            self.transport.abort()
        finally:
            self.uncork()  # a no-op after abort(): a closing transport takes no more output
            self.server.timers.cancel(self, self.timer_key)
            self.timer_when = float("inf")
            if not self.transport.is_closing():
                self.transport.close()

    async def _serve(self) -> bool:
        """Answer requests until the connection must close; True when it should linger."""
        server = self.server
        config = server.config
        loop = server.loop
        conn = self.conn
        reader = self.reader
        transport = self.transport
        keepalive_timeout = config.keepalive_timeout
        header_timeout = config.header_timeout
        body_timeout = config.body_timeout
        read = reader.read
        get_write_buffer_size = transport.get_write_buffer_size
        time_now = loop.time
        respond = self._respond
        reading, busy = _Wait.READING, _Wait.BUSY
        idle = Phase.IDLE
        phase = idle
        while True:
            self.waiting = reading
            try:
                if self.penalty is not None:
                    await self._wait_for_room()
                data = await read(READ_SIZE)
            except asyncio.CancelledError:
                self.waiting = busy
                return self._on_read_interrupted(self._take_interrupt())
            self.waiting = busy
            conn.receive_data(data)
            answered = self.answered
            verdict = respond()
            while verdict in (_DRAIN_THEN_RESPOND, _AWAIT_JOB):
                if verdict == _AWAIT_JOB:
                    await self._compute()
                else:
                    await self._drain(time_now() + body_timeout)
                verdict = respond()
            if verdict != _READ_MORE:
                return verdict == _CLOSE_LINGERING
            if get_write_buffer_size() > WRITE_HIGH_WATER:
                await self._drain(time_now() + body_timeout)
            # Re-arm the deadline for what we wait on next: a new phase (or a new request in
            # the same phase) starts a new clock; more bytes of the same head or body do not.
            new_phase = conn.phase
            if new_phase is idle:
                if server.draining:
                    return False
                # The common case, inlined: the deadline moves later and the wheel stays.
                deadline = time_now() + keepalive_timeout
                self.deadline = deadline
                if deadline < self.timer_when:
                    self._set_deadline(deadline)
            elif new_phase is not phase or answered != self.answered:
                if new_phase is Phase.HEAD:
                    self._set_deadline(time_now() + header_timeout)
                elif new_phase is Phase.BODY:
                    self._set_deadline(time_now() + body_timeout)
            phase = new_phase

    def _respond(self) -> int:
        """Answer every event the buffered input completes; write the answers; say what next.

        Synchronous, so the requests and responses of one chunk are garbage the moment it
        returns, instead of staying referenced from a suspended frame while the client idles.
        """
        server = self.server
        conn = self.conn
        next_event = conn.next_event
        send = conn.send
        handle = server.routes.handle
        pool = server.pool
        metrics = server.metrics
        date = server.date  # a synchronous step: neither changes before it returns
        draining = server.draining
        # Not loop.time(): uvloop's is cached per loop iteration (1 ms steps), so everything
        # inside this synchronous step would take 0 s.
        now = time.perf_counter
        started = now()
        out: list[bytes] = []
        size = 0
        answered = 0
        verdict = _READ_MORE
        while True:
            try:
                event = next_event()
            except ProtocolError as err:
                out.append(send(None, error_response(err)))
                metrics.protocol_error(err.status)
                verdict = _CLOSE_LINGERING
                break
            if type(event) is Request:
                client = self.client_of(event)
                try:
                    if event.path == "/metrics":
                        response = _metrics_response(event, metrics)
                    elif pool is None:
                        response = handle(event)
                    else:  # cheap work inline, whoever asks; costly work to the pool
                        answer = handle(event, INLINE_BUDGET)
                        if type(answer) is Deferred:
                            self.deferred = (event, answer, started, client)
                            verdict = _AWAIT_JOB
                            break
                        assert type(answer) is Response
                        response = answer
                    if draining and not response.close:
                        response = dataclasses.replace(response, close=True)
                    data = send(event, response, date=date)
                except Exception:  # a bug in a handler, or a response it cannot be sent as
                    response, data = self._internal_error(event, draining, date)
                out.append(data)
                answered += 1
                self._account(event, response, now() - started, client)
                size += len(data)
                if size > WRITE_HIGH_WATER:  # a long pipeline: flush and drain before more
                    verdict = _DRAIN_THEN_RESPOND
                    break
            elif event is NEED_DATA:
                break
            elif event is CLOSED:
                verdict = _CLOSE
                break
            else:  # ExpectContinue: invite the body the client is holding back
                out.append(CONTINUE_BYTES)
        if answered:
            self.answered += answered
            server.count_requests(answered)
        if out:
            self._write(out[0] if len(out) == 1 else b"".join(out), verdict == _READ_MORE)
        return verdict

    def _write(self, data: bytes, may_cork: bool) -> None:
        """Write `data` now, or (`may_cork`: the connection stays open) at the end of this loop
        iteration, in one burst with every other connection's answers."""
        transport = self.transport
        if may_cork and self.pending is None and not transport.get_write_buffer_size():
            server = self.server
            if server.batching:
                # Corked: written after every connection ready in this loop iteration has been
                # answered, as one burst, like a select() server's write pass. A write to a peer
                # that has gone to sleep pays for waking it (on loopback, in our sys time: ~12 us
                # a request at wrk -c64 when written one by one, with ~50 us of work between
                # writes); in a burst the peer is awake for all but the first. Costs the wait
                # for this iteration's other answers.
                self.pending = data
                server.corked.append(self)
            else:  # the first answer of an iteration goes at once: a lone client waits not
                server.start_batch()
                transport.write(data)
        else:
            self.uncork()
            transport.write(data)

    def _internal_error(
        self, event: Request, draining: bool, date: bytes
    ) -> tuple[Response, bytes]:
        log.exception("handler failed for %s %s", event.method, event.target)
        response = internal_error_response()
        response.close = response.close or draining
        return response, self.conn.send(event, response, date=date)

    def _account(
        self, event: Request, response: Response, elapsed: float, client: Client
    ) -> None:
        """Metrics and the access log for one answered request."""
        server = self.server
        status = response.status
        server.metrics.request_done(event.path, status, elapsed)
        if status == 422:
            server.metrics.calculator_error(response.reason or "other")
        access = server.access
        if access is not None:
            access.log(
                client.host, event.method, event.target, event.version, status,
                0 if event.method == "HEAD" else len(response.body),
                elapsed, event.header("user-agent"), scheme=client.scheme,
            )

    async def _compute(self) -> None:
        """Run the deferred calculation in the pool and write its answer, in order.

        The connection reads nothing meanwhile (its next pipelined requests wait in the
        socket), and its deadline is the body timeout: the pool answers long before.
        """
        assert self.deferred is not None
        event, deferred, started, client = self.deferred
        self.deferred = None
        server = self.server
        pool = server.pool
        assert pool is not None
        loop = server.loop
        done: asyncio.Future[Ticket] = loop.create_future()

        def notify(ticket: Ticket) -> None:  # on the pool's thread
            loop.call_soon_threadsafe(_settle, done, ticket)

        ticket = pool.submit(client.host, deferred.job, notify)
        close = server.draining
        outcome: Outcome
        if isinstance(ticket, Shed):
            outcome = ticket
            if ticket.reason == CLIENT_SHARE:
                self.penalty = (client.host, ticket.retry_after)
        else:
            self.waiting = _Wait.COMPUTING
            self._set_deadline(loop.time() + server.config.body_timeout)
            try:
                await done
            except asyncio.CancelledError:
                pool.cancel(ticket)
                if self._take_interrupt() is _Interrupt.ABORT:
                    raise ConnectionAbortedError("server shutting down") from None
                # The pool kept no promise within a body timeout (it cannot happen short of a
                # bug): say it was too busy, and close.
                outcome = Shed(SATURATED, 1)
                close = True
            else:
                assert ticket.outcome is not None
                outcome = ticket.outcome
            finally:
                server.room_freed(client.host)
            self.waiting = _Wait.BUSY
        try:
            response = deferred.render(outcome)
            if (close or server.draining) and not response.close:
                response = dataclasses.replace(response, close=True)
            data = self.conn.send(event, response, date=server.date)
        except Exception:
            response, data = self._internal_error(event, server.draining, server.date)
        self.answered += 1
        server.count_requests(1)
        self._account(event, response, time.perf_counter() - started, client)
        # Corked like any answer: a flood of requests shed at once (429s) is answered in bursts,
        # and pool answers that arrive together go out together.
        self._write(data, not response.close)

    async def _wait_for_room(self) -> None:
        """After a 429, read this connection's next request only once its client has room in
        the pool again, or its Retry-After has passed.

        A client that ignores Retry-After and asks again at once on hundreds of connections
        would otherwise have the loop spend all its time reading requests it can only refuse,
        and every other client would wait a turn of that. Each 429 is still sent at once; it
        is the connection's next request that waits (in the kernel's buffer), for at most the
        Retry-After it was told. Waiting counts as waiting for input: a timeout or shutdown
        interrupts it as it would a read.
        """
        assert self.penalty is not None
        host, retry_after = self.penalty
        self.penalty = None
        # At most half the time left to the connection's deadline: a request already waiting in
        # the kernel's buffer is read before a keep-alive timeout could close the connection.
        left = self.deadline - self.server.loop.time()
        await self.server.room_for(host, min(retry_after, left / 2))

    def _on_read_interrupted(self, why: _Interrupt) -> bool:
        """A timeout or shutdown while waiting for input; True when the connection lingers."""
        conn = self.conn
        if why is _Interrupt.TIMEOUT and conn.phase in (Phase.HEAD, Phase.BODY):
            config = self.server.config
            head = conn.phase is Phase.HEAD
            err = timeout_error(conn.phase, config.header_timeout if head else config.body_timeout)
            self.uncork()
            self.transport.write(conn.send(None, error_response(err)))
            self.server.metrics.protocol_error(err.status)
            return True
        if why is _Interrupt.ABORT:
            self.transport.abort()
        return False

    async def _drain(self, deadline: float) -> None:
        """Wait for the client to read our output, for at most until `deadline`."""
        self.waiting = _Wait.WRITING
        self._set_deadline(deadline)
        self.uncork()
        try:
            await self.writer.drain()
        except asyncio.CancelledError:
            self._take_interrupt()
            self.transport.abort()  # a client that never reads: nothing more can be said
            raise ConnectionAbortedError("client did not read its responses") from None
        self.waiting = _Wait.BUSY

    async def _linger(self) -> None:
        self.waiting = _Wait.LINGERING
        self._set_deadline(self.server.loop.time() + LINGER_SECONDS)
        try:
            await _linger(self.reader, self.writer)
        except asyncio.CancelledError:
            if self._take_interrupt() is _Interrupt.ABORT:
                self.transport.abort()
        self.waiting = _Wait.BUSY


def _metrics_response(request: Request, metrics: Metrics) -> Response:
    """GET /metrics: the Prometheus exposition of every worker of this server."""
    if request.method not in ("GET", "HEAD"):
        return Response(405, [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")],
                        b"405 Method Not Allowed\n")
    return Response(200, [("Content-Type", METRICS_CONTENT_TYPE), ("Cache-Control", "no-store")],
                    metrics.render())


def _settle_none(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _settle(done: asyncio.Future[Ticket], ticket: Ticket) -> None:
    if not done.done():
        done.set_result(ticket)


def _peer_host(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family == socket.AF_UNIX:
        return UNIX_PEER
    return "-"


async def serve(
    config: Config,
    *,
    routes: Routes | None = None,
    shutdown: asyncio.Event | None = None,
    force: asyncio.Event | None = None,
    ready: ReadyCallback | None = None,
    sock: socket.socket | list[socket.socket] | None = None,
    metrics: Metrics | None = None,
    certificates: tls.Certificates | None = None,
    max_requests: int = 0,
    on_max_requests: Callable[[], None] | None = None,
) -> None:
    """Serve until `shutdown` is set, then drain gracefully (or at once when `force` is set).

    `routes` defaults to the calculator's routes over app/static (read with aiofiles); `ready`
    is called with the bound (host, port) once connections are accepted (a Unix socket: (path,
    0)); `sock` is an already bound listening socket (or several) to use instead of what the
    config names (e.g. for a pre-fork supervisor), closed when serving ends; `metrics` is where
    counters go (default: this process only); `certificates` the TLS context holder (default:
    read from the config's --ssl-* files when TLS is on; raises tls.TLSError if they are bad);
    `on_max_requests` is called once `max_requests` requests (0: never) have been answered.
    Without `shutdown`, serves until cancelled.
    """
    loop = asyncio.get_running_loop()
    if certificates is None and tls.enabled(config):
        certificates = tls.Certificates(config)
    if routes is None:
        routes = Routes(await load_static_assets())
    if metrics is None:
        metrics = Metrics()
    pool = _make_pool(config, metrics)
    state = _Server(config, routes, loop, metrics, pool,
                    scheme="http" if certificates is None else "https",
                    max_requests=max_requests, on_max_requests=on_max_requests)
    listeners: Listeners | None = None
    if sock is None:
        listeners = open_listeners(config)
        sockets = listeners.sockets
    else:
        sockets = [sock] if isinstance(sock, socket.socket) else list(sock)
    listener = _Acceptor(loop, sockets, state.accept, certificates=certificates,
                         handshake_timeout=config.header_timeout,
                         max_handshakes=config.max_connections)
    try:
        bound = sockets[0].getsockname()
        if ready is not None:
            if isinstance(bound, tuple):
                ready(str(bound[0]), int(bound[1]))
            else:
                ready(os.fsdecode(bound), 0)
        stop = shutdown if shutdown is not None else asyncio.Event()
        await stop.wait()
        log.info("shutting down: no new connections; %d open", len(state.clients))
        await listener.close()
        state.begin_drain()
        if force is None:
            force = asyncio.Event()
        waiters = [asyncio.ensure_future(state.all_closed.wait()),
                   asyncio.ensure_future(force.wait())]
        _, pending = await asyncio.wait(
            waiters, timeout=config.graceful_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in pending:
            waiter.cancel()
        if state.clients:
            log.warning("aborting %d connection(s) still open", len(state.clients))
            state.abort_all()
            # Let the aborted tasks run their cleanup before the loop goes away.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await state.all_closed.wait()
    finally:
        state.close()
        await listener.close()
        if listeners is not None:
            listeners.close()
        if pool is not None:  # after the drain: the jobs of finished requests are all done
            await asyncio.to_thread(pool.close)


def _make_pool(config: Config, metrics: Metrics) -> CalcPool | None:
    """The calculation pool --calc-workers asks for (started), or None to compute inline."""
    size = config.pool_size
    if size == 0:
        return None
    pool = CalcPool(size, timeout=config.calc_timeout, client_queue=config.calc_client_queue,
                    backlog=config.calc_backlog, observer=metrics)
    pool.start()
    log.debug("calculation pool: %d worker(s), %g s limit", size, config.calc_timeout)
    return pool


def log_calculator() -> None:
    """Which calculator runs: compiled (scripts/build_native.py) or its pure Python sources."""
    if IMPLEMENTATION == "compiled":
        log.info("calculator: compiled with mypyc")
    else:
        log.info("calculator: pure Python (scripts/build_native.py compiles it: 2x faster)")


# -- process entry ------------------------------------------------------------------------------


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop constructor for --loop: uvloop when importable (auto), or the one asked."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise SystemExit("--loop uvloop: uvloop is not installed") from None
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def raise_fd_limit(wanted: int) -> None:
    """Lift the soft RLIMIT_NOFILE toward max connections + reserve (never past the hard limit)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted + FD_RESERVE
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < wanted + FD_RESERVE:
        log.warning(
            "file descriptor limit %d is below --max-connections %d; connections beyond it "
            "wait in the backlog (asyncio loop) or are reset (uvloop)", soft, wanted,
        )


def configure_logging(config: Config) -> None:
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def print_listening(url: str) -> None:
    """The one line DESIGN.md promises once connections are accepted."""
    print(f"listening on {url}", flush=True)


async def _main(config: Config) -> int:
    loop = asyncio.get_running_loop()
    shutdown = asyncio.Event()
    force = asyncio.Event()
    certificates: tls.Certificates | None = None

    def on_signal(signum: int) -> None:
        if not shutdown.is_set():
            log.info("received %s: finishing in-flight requests (up to %g s)",
                     signal.Signals(signum).name, config.graceful_timeout)
            shutdown.set()
        elif signum == signal.SIGINT:
            log.warning("second SIGINT: exiting now")
            force.set()

    if tls.enabled(config):
        try:
            certificates = tls.Certificates(config)
        except tls.TLSError as exc:
            log.critical("%s", exc)
            return 2
        # One process has no workers to replace: SIGHUP re-reads the certificate instead.
        loop.add_signal_handler(signal.SIGHUP, certificates.reload)
    try:
        listeners = open_listeners(config)
    except OSError as exc:
        log.critical("%s", exc)
        return 1
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await serve(config, shutdown=shutdown, force=force, sock=listeners.sockets,
                    certificates=certificates,
                    ready=lambda host, port: print_listening(listeners.url(tls.enabled(config))))
    finally:
        listeners.close()
    return 130 if force.is_set() else 0


def run(config: Config, main: Callable[[Config], Coroutine[Any, Any, int]] = _main) -> int:
    """Run the server in this process until a signal stops it; returns the exit code."""
    configure_logging(config)
    log_calculator()
    raise_fd_limit(config.max_connections)
    with asyncio.Runner(loop_factory=loop_factory(config.loop)) as runner:
        loop_name = type(runner.get_loop()).__module__.split(".")[0]
        log.debug("event loop: %s (pid %d)", loop_name, os.getpid())
        return runner.run(main(config))
