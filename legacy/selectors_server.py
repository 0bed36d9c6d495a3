"""selectors: the operating system's best readiness API, with a callback riding on each socket.

    python -m legacy.selectors_server --port 8000

How it waits: `selectors.DefaultSelector` is epoll on Linux and kqueue on the BSDs and macOS.
Unlike select, the kernel keeps the interest list: we `register` a socket once with what we
want to hear about, `modify` it only when that changes, and `select(timeout)` returns just the
sockets that are ready. As in the standard library's own example, each registration carries
its callback in `key.data`, so the loop is three lines: for each ready key, call
`key.data(mask)`. The timeout is the time to the nearest connection deadline; in between, the
process sleeps in the kernel and burns nothing.

Interest follows the buffers: EVENT_READ while the session `wants_input` (not done, and less
than HIGH_WATER of answers waiting), EVENT_WRITE only while output is pending. A socket is
almost always writable, so asking for EVENT_WRITE with nothing to write would wake the loop
at once, every turn, forever: a busy loop at 100% CPU.

What one more connection costs: a socket, its buffers, a Client object and one entry in the
kernel's interest list; waking costs O(ready sockets), not O(all sockets). There is no
descriptor ceiling beyond `ulimit -n`.

Where it breaks: still one thread on one core, so every callback must return quickly; a slow
calculation would stall everyone. Costly ones go to the calculation pool (`app.pool`): the
connection is unregistered while its job runs (nothing to read or write until then), and the
pool's `Mailbox`, registered like a socket, calls `on_computed` when answers are in. Deadlines
are checked by a sweep over all connections (O(n)) at most every SWEEP_INTERVAL rather than on
every turn; asyncio keeps timers in a heap.

What the post got wrong: TCP is a stream (`recv(1024)` may hold half a request or three); an
empty `recv` means the peer closed, BlockingIOError means nothing yet; `sendall` has no place
on a non-blocking socket; and once a callback has closed a socket, nothing may touch it again,
even when the same turn's event list still mentions its (possibly reused) descriptor.
"""

from __future__ import annotations

import logging
import selectors
import socket
import time

from app.listen import ACCEPT_RETRY
from app.pool import CalcPool, Mailbox
from app.routes import Routes
from legacy._common import (
    RECV_SIZE,
    STOP_GRACE,
    SWEEP_INTERVAL,
    Session,
    Timeouts,
    Wakeup,
    accept_failed,
    announce,
    close_abruptly,
    close_gently,
    config_from,
    listen,
    make_parser,
    make_pool,
    make_routes,
    no_delay,
    setup_logging,
)

log = logging.getLogger("legacy.selectors")


class Client:
    """One connection: its socket, its session, and `ready`, the callback in its key.data."""

    def __init__(self, server: Server, sock: socket.socket, session: Session) -> None:
        self.server = server
        self.sock = sock
        self.session = session
        self.events = selectors.EVENT_READ
        self.closed = False

    def ready(self, mask: int) -> None:
        if self.closed:
            return  # closed earlier in this turn: its descriptor may already be someone else's
        try:
            if mask & selectors.EVENT_READ:
                self._read()
            if mask & selectors.EVENT_WRITE and self.session.out:
                self._write()
        except Exception:  # a bug triggered by one client costs only that client
            log.exception("connection failed")
            self.session.aborted = True
        self.update()

    def _read(self) -> None:
        try:
            data = self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return  # nothing to read after all
        except OSError:
            self.session.aborted = True
            return
        self.session.received(data)  # b"" is the peer's EOF

    def resume(self) -> None:
        """The pool answered this client's calculation: queue the response, parse on."""
        if self.closed:
            return
        try:
            self.session.resume()
        except Exception:
            log.exception("connection failed")
            self.session.aborted = True
        self.update()

    def _write(self) -> None:
        try:
            sent = self.sock.send(self.session.out)  # as much as fits; the rest next time
        except BlockingIOError:
            return
        except OSError:
            self.session.aborted = True
            return
        self.session.sent(sent)

    def update(self) -> None:
        """Register interest in exactly what the session needs next, or close."""
        if self.closed:
            return
        events = (selectors.EVENT_READ if self.session.wants_input else 0) | (
            selectors.EVENT_WRITE if self.session.out else 0
        )
        if self.session.parked_until is not None and not self.closed:
            self.server.parked.add(self)  # run() looks again when it may read
        if self.session.finished:
            self.close()
        elif events == self.events:
            return
        elif not events:  # a calculation in the pool, all written: nothing to hear until then
            self.server.selector.unregister(self.sock)
        elif not self.events:
            self.server.selector.register(self.sock, events, self.ready)
        else:
            self.server.selector.modify(self.sock, events, self.ready)
        self.events = events

    def close(self) -> None:
        self.closed = True
        if self.events:
            self.server.selector.unregister(self.sock)
        self.server.clients.discard(self)
        self.server.parked.discard(self)
        if self.session.aborted:
            close_abruptly(self.sock)
        else:
            close_gently(self.sock)


class Server:
    """The loop. Callers: `run()`; it returns after a stop signal, once clients have finished."""

    def __init__(
        self,
        listener: socket.socket,
        routes: Routes,
        timeouts: Timeouts,
        pool: CalcPool | None = None,
    ) -> None:
        self.listener = listener
        self.routes = routes
        self.timeouts = timeouts
        self.pool = pool
        self.selector = selectors.DefaultSelector()
        self.clients: set[Client] = set()
        # Answered 429, reading nothing until room or `parked_until` (see Session.parked).
        self.parked: set[Client] = set()
        self.wake = Wakeup()
        self.accept_after: float | None = None
        self.stop_by: float | None = None
        listener.setblocking(False)
        self.selector.register(listener, selectors.EVENT_READ, self.accept)
        self.selector.register(self.wake.reader, selectors.EVENT_READ, self.on_signal)
        # Costly calculations come back through here: the pool posts the Client and writes a
        # byte, which wakes this same selector.
        self.done: Mailbox[Client] = Mailbox()
        self.selector.register(self.done, selectors.EVENT_READ, self.on_computed)

    def on_computed(self, mask: int) -> None:
        for client in self.done.take():
            client.resume()

    def accept(self, mask: int) -> None:
        while True:
            try:
                sock, address = self.listener.accept()
            except BlockingIOError:
                return  # accepted everyone who was waiting
            except OSError as err:  # out of descriptors: stop listening for a moment
                accept_failed(err)
                self.selector.unregister(self.listener)
                self.accept_after = time.monotonic() + ACCEPT_RETRY
                return
            sock.setblocking(False)
            no_delay(sock)
            session = Session(self.routes, self.timeouts, self.pool, address[0])
            client = Client(self, sock, session)
            session.notify = self.done.poster(client)
            self.selector.register(sock, selectors.EVENT_READ, client.ready)
            self.clients.add(client)

    def on_signal(self, mask: int) -> None:
        self.wake.drain()
        if self.stop_by is None:
            self.stop_by = time.monotonic() + STOP_GRACE
            if self.accept_after is None:  # else it is unregistered already
                self.selector.unregister(self.listener)
            self.accept_after = None
            self.listener.close()
            for client in list(self.clients):
                client.session.stop()
                client.update()

    def sweep(self, now: float) -> float:
        """Expire what is due; return when to look again (O(n), so not on every turn)."""
        nearest = now + SWEEP_INTERVAL  # deadlines can move earlier between sweeps
        for client in list(self.clients):
            deadline = client.session.deadline
            if deadline <= now:
                client.session.expire()  # 408 when a request was under way, else close quietly
                client.update()
            else:
                nearest = min(nearest, deadline)
        return nearest

    def run(self) -> None:
        next_sweep = 0.0
        while self.stop_by is None or (self.clients and time.monotonic() < self.stop_by):
            # Sleep until a socket is ready or the next deadline check, whichever comes first.
            wake_at = [next_sweep] if self.clients else []
            wake_at += [t for t in (self.accept_after, self.stop_by) if t is not None]
            wake_at += [t for c in self.parked if (t := c.session.parked_until) is not None]
            timeout = max(0.0, min(wake_at) - time.monotonic()) if wake_at else None
            for key, mask in self.selector.select(timeout):
                key.data(mask)
            released: set[str] = set()
            for client in list(self.parked):  # room came (`done` woke us) or the time is up
                client.session.release_if_room(released)
                if not client.session.parked:
                    self.parked.discard(client)
                    client.update()

            now = time.monotonic()
            if self.accept_after is not None and now >= self.accept_after and not self.stop_by:
                self.selector.register(self.listener, selectors.EVENT_READ, self.accept)
                self.accept_after = None
            if now >= next_sweep:
                next_sweep = self.sweep(now)
        for client in list(self.clients):  # the stop grace ran out
            client.session.aborted = True
            client.close()
        self.selector.close()
        self.wake.close()
        self.done.close()


def main() -> None:
    setup_logging()
    config = config_from(make_parser(__doc__).parse_args())
    listener = listen(config)
    pool = make_pool(config.pool)
    server = Server(listener, make_routes(), config.timeouts, pool)
    announce(listener)
    try:
        server.run()
    finally:
        if pool is not None:
            pool.close()


if __name__ == "__main__":
    main()
