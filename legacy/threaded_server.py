"""A thread per connection: the main thread accepts, each client gets one thread of its own.

    python -m legacy.threaded_server --port 8000

How it waits: every wait is a blocking system call. The main thread sleeps in `accept()`; each
connection's thread sleeps in `recv()` with a socket timeout equal to its session deadline, or
in `sendall()` while the client is slow to read. The kernel wakes exactly the thread whose
socket is ready, so an idle server burns no CPU and the code reads top to bottom like a
single-client program (`_common.serve_blocking`).

What one more connection costs: a thread. That is a kernel task, a stack (8 MiB of address
space on Linux, of which a few dozen KiB are ever touched), and a turn in the scheduler. The
GIL lets one thread run Python at a time, so threads overlap waiting, never computing: a long
calculation holds up everyone until the interpreter switches (every 5 ms), and many of them
make every thread wait its turn for the GIL. So a costly calculation goes to the calculation
pool (`app.pool`) and the connection's thread blocks on its ticket (`threading.Event.wait`,
which releases the GIL) until a worker process has computed it.

Where it breaks: a thousand idle clients are a thousand sleeping threads; ten thousand meet
`ulimit -u`, `kernel.threads-max` and a lot of memory, and switching among them gets slower.
Nothing here caps the number of threads, so a flood of silent connections (slowloris) holds
one thread each until the header timeout throws it out. A pool with a queue would cap the
threads, at the price of making the next client wait for a free one.

Why one thread per connection and not three: the post starts three threads per connection.
Two threads calling `recv` on one socket each get an arbitrary slice of the same byte stream,
so neither holds a whole request; two threads calling `send` interleave their responses, and
HTTP/1.1 requires responses in request order. One thread owns the socket: it reads, answers in
order and closes, and the ordering comes for free.

What the post got wrong besides: TCP is a stream, not messages. `recv(1024)` may hold half a
request or three pipelined ones, so bytes go into the protocol core, which buffers until a
request is complete; `recv` returning b"" means the peer closed, and then the thread must stop
using the socket rather than loop on it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from app.listen import ACCEPT_RETRY
from legacy._common import (
    STOP_GRACE,
    Connections,
    Stop,
    accept_failed,
    announce,
    config_from,
    listen,
    make_parser,
    make_pool,
    make_routes,
    raise_stop_on_signals,
    setup_logging,
)

log = logging.getLogger("legacy.threaded")

ACCEPT_POLL = 0.5  # seconds: the longest a stop signal can go unnoticed (socketserver's too)


def serve_forever(listener: socket.socket, connections: Connections) -> None:
    """Accept until `Stop`: one daemon thread per connection, each running `connections.serve`.

    accept() waits at most ACCEPT_POLL. Python runs signal handlers in the main thread, between
    bytecodes; a signal that lands just before the call starts (after Python last looked), or
    in another thread (the kernel picks any), does not interrupt this accept(), and the stop
    would wait for the next client.
    """
    listener.settimeout(ACCEPT_POLL)
    while True:
        try:
            sock, address = listener.accept()
        except TimeoutError:
            continue  # nobody came: Python has run any signal handler; wait again
        except OSError as err:  # out of descriptors or the like: keep serving the others
            accept_failed(err)
            time.sleep(ACCEPT_RETRY)
            continue
        # Daemon: a thread stuck past the stop grace cannot keep the process alive.
        threading.Thread(target=connections.serve, args=(sock, address[0]), daemon=True).start()


def main() -> None:
    setup_logging()
    config = config_from(make_parser(__doc__).parse_args())
    pool = make_pool(config.pool)
    connections = Connections(make_routes(), config.timeouts, pool)
    listener = listen(config)
    raise_stop_on_signals()
    try:
        announce(listener)
        serve_forever(listener, connections)
    except Stop:
        pass
    finally:
        listener.close()
        connections.stop()
        if not connections.wait(STOP_GRACE):
            log.warning("some connections did not finish within %.0f s", STOP_GRACE)
        if pool is not None:
            pool.close()


if __name__ == "__main__":
    main()
