"""socketserver: the standard library's thread (or process) per connection, in a few lines.

    python -m legacy.socketserver_server --port 8000          # ThreadingTCPServer
    python -m legacy.socketserver_server --port 8000 --fork   # ForkingTCPServer

How it fits: `serve_forever()` waits for the listening socket to become readable (a selector
with a 0.5 s poll interval, so it can notice `shutdown()`), accepts, and hands the socket to
`process_request`, the one hook that differs: ThreadingMixIn starts a thread, ForkingMixIn
forks a child. Either way the handler's `handle()` then owns the connection. The post's
handler answered one `recv(1024)` and returned, which is one request per connection at best;
ours loops over keep-alive requests (`_common.serve_blocking`) until the client closes, says
`Connection: close`, or times out. The mix-in must come first in the class bases.

How it waits and what one more connection costs: as in threaded_server, a blocking thread per
connection (a stack and a kernel task). With `--fork`, a whole process: a fork of this
interpreter, copy-on-write pages that Python's reference counting soon copies for real, and a
child that shares nothing, so any state (a cache, a counter) splits per connection. Forking
buys isolation: a crash takes down one child, and CPU-bound calculations run truly in parallel.
Threads hand costly calculations to the calculation pool and block on the ticket, as in
threaded_server. Forked children compute inline: a pool's dispatcher thread does not survive
`fork()`, and each child is its own process anyway; but then the kernel shares the CPU per
process, not per client, so a client with 100 connections gets 100 shares (a model limit).

Where it breaks: threads, as in threaded_server. Processes: ForkingMixIn waits for a child to
exit once `max_children` are alive (40 by default, `MAX_CHILDREN` here), so client number
MAX_CHILDREN + 1 waits in the listen backlog until another leaves; a fork per connection also
makes short connections expensive. The default `request_queue_size` of 5 drops connection
attempts under a burst, so we raise it to the system maximum.

What the post got wrong: TCP is a stream, not messages. `recv(1024)` may hold half a request
or three, so the bytes go to the protocol core, which buffers until a request is complete; an
empty `recv` means the peer closed, and the handler must then stop using the socket.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import socketserver
import time
from types import FrameType
from typing import Any

from app.listen import ACCEPT_RETRY
from legacy._common import (
    BACKLOG,
    STOP_GRACE,
    Config,
    Connections,
    Stop,
    accept_failed,
    announce,
    config_from,
    make_parser,
    make_pool,
    make_routes,
    raise_stop_on_signals,
    setup_logging,
)

log = logging.getLogger("legacy.socketserver")

MAX_CHILDREN = 256  # live child processes with --fork; ForkingMixIn's default is 40


class Handler(socketserver.BaseRequestHandler):
    """Serves one connection, keep-alive requests included, then returns."""

    server: ThreadingServer | ForkingServer

    def handle(self) -> None:
        if isinstance(self.server, ForkingServer):
            # This is the child, with the parent's handlers, which raise Stop. Make SIGTERM
            # (sent by the parent on shutdown) and SIGINT (Ctrl-C reaches the whole process
            # group) finish this one connection gracefully instead.
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._stop_child)
        self.server.connections.serve(self.request, self.client_address[0])

    def _stop_child(self, signum: int, frame: FrameType | None) -> None:
        self.server.connections.stop()


class _Setup:
    """What both server classes add to socketserver: our listen settings and a registry."""

    allow_reuse_address = True
    request_queue_size = BACKLOG
    address_family: int

    def __init__(self, config: Config, connections: Connections) -> None:
        self.address_family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        super().__init__((config.host, config.port), Handler)  # type: ignore[call-arg]
        self.connections = connections

    def handle_error(self, request: object, client_address: object) -> None:
        log.exception("connection from %s failed", client_address)

    def get_request(self) -> tuple[socket.socket, Any]:
        """socketserver drops a failed accept and selects again; out of descriptors, the
        listener stays readable and that loop would spin. Pause a moment first."""
        try:
            return super().get_request()  # type: ignore[misc, no-any-return]
        except OSError as err:
            accept_failed(err)
            time.sleep(ACCEPT_RETRY)
            raise


class ThreadingServer(_Setup, socketserver.ThreadingTCPServer):
    daemon_threads = True  # a connection stuck past the stop grace cannot keep us alive
    block_on_close = False  # we wait, with a bound, through `connections` instead


class ForkingServer(_Setup, socketserver.ForkingTCPServer):
    max_children = MAX_CHILDREN
    block_on_close = False  # we wait, with a bound, in `stop_children`

    def stop_children(self, grace: float) -> None:
        """SIGTERM every child (each finishes its response), wait `grace`, then SIGKILL."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.active_children or ():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while self.active_children and time.monotonic() < deadline:
                time.sleep(0.05)  # waitpid has no timeout; a short poll on the way out is fine
                self.collect_children()


def main() -> None:
    setup_logging()
    parser = make_parser(__doc__)
    parser.add_argument("--fork", action="store_true", help="a process per connection")
    args = parser.parse_args()
    config = config_from(args)
    # --fork: each connection is a child process already, off the accept loop; a pool's thread
    # would not survive the fork, so children compute inline (see the module docstring).
    pool = None if args.fork else make_pool(config.pool)
    connections = Connections(make_routes(), config.timeouts, pool)
    server_class = ForkingServer if args.fork else ThreadingServer
    server = server_class(config, connections)
    raise_stop_on_signals()
    try:
        announce(server.socket)
        server.serve_forever()
    except Stop:
        pass
    finally:
        server.server_close()  # closes the listener
        if isinstance(server, ForkingServer):
            server.stop_children(STOP_GRACE)
        connections.stop()
        if not connections.wait(STOP_GRACE):
            log.warning("some connections did not finish within %.0f s", STOP_GRACE)
        if pool is not None:
            pool.close()


if __name__ == "__main__":
    main()
