"""select.select: one thread, non-blocking sockets, and a loop that asks which ones are ready.

    python -m legacy.select_server --port 8000

How it waits: each turn builds two lists, the sockets we want to read (the listener, and every
client that may send more) and the sockets we want to write (every client with output pending),
and calls `select(readers, writers, [], timeout)`. select does not poll at fixed intervals, as
the post suggests: the process sleeps in the kernel until a socket is ready or the timeout
passes, and the timeout is the time to the nearest connection deadline (deadlines are swept at
least every SWEEP_INTERVAL, since handling a request can move one earlier). Nothing blocks
anywhere else: a ready socket gets exactly one `recv` or one `send`, which cannot block.

What one more connection costs: a socket, two small buffers (input inside the protocol core,
output in `session.out`) and a few entries in lists, no thread at all. But every turn passes
every socket to the kernel and back, so each turn costs O(connections), busy or idle.

Where it breaks: select's fd_set is a fixed bitmap of FD_SETSIZE (1024) bits, so it cannot
watch a descriptor numbered 1024 or more. Python raises ValueError for one; C code silently
corrupts memory. Past the ceiling this server answers new clients 503 and closes, rather than
crash. One thread means one core, and a slow calculation would stall every client: while the
loop computes, nobody's bytes are read. So it hands costly ones to the calculation pool
(`app.pool`) and keeps going; the pool posts the finished ticket to a `Mailbox`, a socket pair
whose reading end is in the same `select()` as the clients, so the answer wakes the loop like
any other ready socket. That is how an event loop stays responsive: it only waits on
descriptors, and work that is not I/O becomes a descriptor too.

What the post got wrong:
- TCP is a stream, not messages: `recv(1024)` may hold half a request or three pipelined
  ones. Bytes go into a per-connection buffer (the protocol core) until a request is whole,
  and answers go into a per-connection output buffer, written as the socket accepts them.
- `sendall` on a non-blocking socket raises BlockingIOError as soon as the kernel buffer is
  full, having sent an unknown part. Write with `send` only when select says writable, and
  keep what did not fit.
- An empty `recv` means the peer closed; BlockingIOError means "nothing yet" (a spurious
  wake-up), which is not an error and not EOF.
- After closing a socket in this turn, stop processing it: it may also be in the writable
  list returned by the same select call, and its descriptor number may already be reused.
"""

from __future__ import annotations

import contextlib
import logging
import math
import select
import socket
import time
from collections.abc import Callable

from app.listen import ACCEPT_RETRY
from app.pool import CalcPool, Mailbox
from app.protocol import Connection, ProtocolError, error_response
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
    current_date,
    listen,
    make_parser,
    make_pool,
    make_routes,
    no_delay,
    setup_logging,
)

log = logging.getLogger("legacy.select")

FD_SETSIZE = 1024  # glibc's fd_set holds descriptors 0..1023; select.select refuses the rest


def refuse(sock: socket.socket) -> None:
    """Answer 503 to a client select cannot watch; a fresh socket's send buffer has room."""
    err = ProtocolError("too many connections for select(); try again later", 503)
    with contextlib.suppress(OSError):
        sock.send(Connection().send(None, error_response(err), date=current_date()))
    close_gently(sock)


def on_readable(sock: socket.socket, session: Session) -> None:
    try:
        data = sock.recv(RECV_SIZE)
    except BlockingIOError:
        return  # a spurious wake-up: nothing to read after all
    except OSError:
        session.aborted = True  # reset by the peer
        return
    session.received(data)  # b"" is the peer's EOF: answer what is buffered, then close


def on_writable(sock: socket.socket, session: Session) -> None:
    try:
        sent = sock.send(session.out)  # only part may fit; the rest waits for the next turn
    except BlockingIOError:
        return
    except OSError:
        session.aborted = True
        return
    session.sent(sent)  # may produce answers to pipelined requests held back by HIGH_WATER


def resume(sock: socket.socket, session: Session) -> None:
    session.resume()  # the pool answered: queue the response, parse on


def serve(
    listener: socket.socket,
    wake: Wakeup,
    routes: Routes,
    timeouts: Timeouts,
    pool: CalcPool | None = None,
) -> None:
    listener.setblocking(False)
    sessions: dict[socket.socket, Session] = {}
    # Costly calculations come back here: the pool posts the client's socket and writes a byte
    # that wakes the same select() that watches the clients.
    done: Mailbox[socket.socket] = Mailbox()

    def close(sock: socket.socket) -> None:
        session = sessions.pop(sock)
        if session.aborted:
            close_abruptly(sock)
        else:
            close_gently(sock)

    def guarded(handler: Callable[[socket.socket, Session], None], sock: socket.socket) -> None:
        """Run one client's handler; a bug triggered by one client costs only that client."""
        session = sessions.get(sock)
        if session is None:
            return  # closed earlier in this turn: stop processing it
        try:
            handler(sock, session)
        except Exception:
            log.exception("connection failed")
            session.aborted = True
        if session.finished:
            close(sock)

    def sweep(now: float) -> float:
        """Expire what is due; return when to look again (O(n), so not on every turn)."""
        nearest = now + SWEEP_INTERVAL  # deadlines can move earlier between sweeps
        for sock, session in list(sessions.items()):
            if session.deadline <= now:
                session.expire()  # 408 when a request was under way; else close quietly
                if session.finished:
                    close(sock)
            else:
                nearest = min(nearest, session.deadline)
        return nearest

    accept_after = next_sweep = 0.0
    stop_by: float | None = None
    while stop_by is None or (sessions and time.monotonic() < stop_by):
        if wake.requested and stop_by is None:
            stop_by = time.monotonic() + STOP_GRACE
            listener.close()
            for sock, session in list(sessions.items()):
                session.stop()
                if session.finished:
                    close(sock)
            continue

        now = time.monotonic()
        readers = [wake.reader, done.reader]
        unpark_at = math.inf  # the first session parked after a 429 to read again
        released: set[str] = set()
        for s, session in sessions.items():
            if session.parked_until is not None:
                session.release_if_room(released)
            if session.wants_input:
                readers.append(s)
            elif session.parked_until is not None:  # room for it wakes us anyway: `done`
                unpark_at = min(unpark_at, session.parked_until)
        if stop_by is None and now >= accept_after:
            readers.append(listener)
        writers = [s for s, session in sessions.items() if session.out]
        # Sleep until a socket is ready or the next deadline check, whichever comes first.
        wake_at = [next_sweep] if sessions else []
        if unpark_at < math.inf:
            wake_at.append(unpark_at)
        wake_at += [t for t in (accept_after, stop_by) if t is not None and t > now]
        timeout = max(0.0, min(wake_at) - now) if wake_at else None

        readable, writable, _ = select.select(readers, writers, [], timeout)

        for sock in readable:
            if sock is wake.reader:
                wake.drain()
            elif sock is done.reader:
                for computed in done.take():
                    guarded(resume, computed)
            elif sock is listener:
                while True:
                    try:
                        client, address = listener.accept()
                    except BlockingIOError:
                        break  # accepted everyone who was waiting
                    except OSError as err:
                        accept_failed(err)
                        accept_after = time.monotonic() + ACCEPT_RETRY
                        break
                    if client.fileno() >= FD_SETSIZE:
                        refuse(client)
                        continue
                    client.setblocking(False)
                    no_delay(client)
                    sessions[client] = Session(
                        routes, timeouts, pool, address[0], done.poster(client))
            else:
                guarded(on_readable, sock)
        for sock in writable:
            guarded(on_writable, sock)

        now = time.monotonic()
        if now >= next_sweep:
            next_sweep = sweep(now)

    for sock in list(sessions):  # the stop grace ran out
        sessions[sock].aborted = True
        close(sock)
    done.close()


def main() -> None:
    setup_logging()
    config = config_from(make_parser(__doc__).parse_args())
    routes = make_routes()
    listener = listen(config)
    wake = Wakeup()
    pool = make_pool(config.pool)
    announce(listener)
    try:
        serve(listener, wake, routes, config.timeouts, pool)
    finally:
        listener.close()
        wake.close()
        if pool is not None:
            pool.close()


if __name__ == "__main__":
    main()
