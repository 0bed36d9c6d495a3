"""Listening sockets, shared by the single-process server and the pre-fork supervisor.

Kept out of `app.server` on purpose: the supervisor binds before it forks, and must not import
the server module itself, or a reload (SIGHUP) would fork workers with the old server code.
"""

from __future__ import annotations

import socket
from typing import Any


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
