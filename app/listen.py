"""Listening sockets, shared by the single-process server, the pre-fork supervisor and the
legacy drivers: binding them, and what to do when accept() fails.

Kept out of `app.server` on purpose: the supervisor binds before it forks, and must not import
the server module itself, or a reload (SIGHUP) would fork workers with the old server code.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any, Final

# Out of descriptors (or kernel memory), accept() fails: every driver stops accepting for this
# long, leaving new clients in the kernel's backlog, instead of spinning on the error.
ACCEPT_RETRY: Final = 0.1
# ... and reports it at most this often, with a count of the failures in between.
ACCEPT_REPORT_INTERVAL: Final = 10.0


class AcceptFailures:
    """Reports failed accept() calls at most every ACCEPT_REPORT_INTERVAL seconds: running out of
    descriptors tends to last, and a line per retry would flood the log exactly when the machine
    is struggling. (Unlocked: two threads racing may both report, or miscount by one.)"""

    def __init__(self, log: logging.Logger, level: int) -> None:
        self.log = log
        self.level = level
        self.last = -ACCEPT_REPORT_INTERVAL
        self.suppressed = 0

    def report(self, exc: OSError) -> None:
        now = time.monotonic()
        if now - self.last < ACCEPT_REPORT_INTERVAL:
            self.suppressed += 1
            return
        self.log.log(self.level, "accept() failed: %s; new connections wait in the backlog, "
                     "retrying every %g s (%d similar errors since the last report)",
                     exc, ACCEPT_RETRY, self.suppressed)
        self.last = now
        self.suppressed = 0


def bind_listeners(
    host: str, port: int, backlog: int, *, reuse_port: bool = False
) -> list[socket.socket]:
    """Listening sockets for every address `host` resolves to, all on one port (asyncio's
    `create_server` rules: SO_REUSEADDR, IPv6 sockets IPv6-only); with `reuse_port`, also
    SO_REUSEPORT, so that several sets can share the port (one per supervisor slot)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[tuple[int, Any]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address[:2]) in seen:
                continue
            seen.add((family, address[:2]))
            if port == 0 and sockets:  # the first socket picked the port; the others join it
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
