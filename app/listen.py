"""Listening sockets, shared by the single-process server, the pre-fork supervisor and the
legacy drivers: binding them (TCP, a Unix socket, or sockets inherited from systemd or a
launcher), and what to do when accept() fails.

Kept out of `app.server` on purpose: the supervisor binds before it forks, and must not import
the server module itself, or a reload (SIGHUP) would fork workers with the old server code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Final

from app.config import Config

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


# -- where a server listens: TCP, a Unix socket, or sockets it inherited ----------------------

# sd_listen_fds(3): systemd passes activated sockets as descriptors 3, 4, ... (SD_LISTEN_FDS_START).
SD_LISTEN_FDS_START: Final = 3
_SD_VARIABLES: Final = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class ListenError(OSError):
    """A listening socket cannot be had; the message is one line fit for the log."""


@dataclass
class Listeners:
    """The listening sockets of one server (or one supervisor slot) and where they came from.

    `shared` sockets (a Unix socket, inherited ones) serve every worker of a supervisor through
    one accept queue: SO_REUSEPORT has no meaning for them. `close()` closes them and removes a
    socket file this process created, if the file is still that socket.
    """

    sockets: list[socket.socket]
    shared: bool = False
    unix_path: str | None = None
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket file we made

    def url(self, tls: bool) -> str:
        """What the `listening on` line names: `http(s)://HOST:PORT` or `unix:PATH`."""
        return socket_url(self.sockets[0], tls)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        path, self.unix_path = self.unix_path, None
        if path is not None and _identity(path) == self.identity:
            with contextlib.suppress(OSError):
                os.unlink(path)


def format_address(host: str, port: int) -> str:
    """`host:port` for a URL: IPv6 literals go in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def socket_url(sock: socket.socket, tls: bool) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{os.fsdecode(name)}" if name else "unix:(unnamed)"
    return f"{'https' if tls else 'http'}://{format_address(str(name[0]), int(name[1]))}"


def problems(config: Config) -> list[str]:
    """Combinations of listening options that make no sense (usage errors)."""
    found = []
    if config.uds is not None and config.fd is not None:
        found.append("--uds and --fd are two different sockets: give one")
    if config.max_requests_jitter and not config.max_requests:
        found.append("--max-requests-jitter needs --max-requests")
    return found


def open_listeners(
    config: Config, *, reuse_port: bool = False, environ: MutableMapping[str, str] | None = None
) -> Listeners:
    """The sockets `config` asks for, in this order of precedence: `--fd N`; sockets systemd
    passed (LISTEN_FDS for this pid; the variables are then removed from `environ`, as
    sd_listen_fds(1) does); `--uds PATH`; every address of `--host` on `--port`. Raises
    ListenError, whose message is the one line to log."""
    inherited = inherited_descriptors(config.fd, os.environ if environ is None else environ)
    if inherited:
        sockets: list[socket.socket] = []
        try:
            for fd in inherited:
                sockets.append(adopt(fd))
        except ListenError:
            for sock in sockets:
                sock.detach()
            raise
        return Listeners(sockets, shared=True)
    if config.uds is not None:
        return bind_unix(config.uds, config.uds_mode, config.backlog)
    try:
        return Listeners(bind_listeners(config.host, config.port, config.backlog,
                                        reuse_port=reuse_port))
    except OSError as exc:
        raise ListenError(f"cannot listen on {config.host} port {config.port}: {exc}") from None


def inherited_descriptors(fd: int | None, environ: MutableMapping[str, str]) -> list[int]:
    if fd is not None:
        return [fd]
    pid, count = environ.get("LISTEN_PID"), environ.get("LISTEN_FDS")
    if pid is None or count is None:
        return []
    if pid != str(os.getpid()):  # meant for another process (our parent, say)
        return []
    for name in _SD_VARIABLES:
        environ.pop(name, None)
    try:
        n = int(count)
    except ValueError:
        raise ListenError(f"cannot listen: LISTEN_FDS={count!r} is not a number") from None
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + n))


def adopt(fd: int) -> socket.socket:
    """A socket object over inherited descriptor `fd`, which must be a listening stream socket."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ListenError(f"cannot listen on descriptor {fd}: not a socket "
                          f"({exc.strerror or exc})") from None
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        listening = 0
    if sock.type != socket.SOCK_STREAM or not listening:
        sock.detach()  # not ours to close
        raise ListenError(f"cannot listen on descriptor {fd}: not a listening stream socket")
    sock.set_inheritable(False)  # forked workers share it; programs we might exec do not
    return sock


def bind_unix(path: str, mode: int, backlog: int) -> Listeners:
    """A listening Unix socket at `path` with permissions `mode`.

    A socket file nobody answers on (left by a crash) is replaced; one that answers is an
    error (another server is running); anything that is not a socket is never removed.
    """
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    created = False
    try:
        sock.bind(path)
        created = True
        os.chmod(path, mode)  # before listen(): nobody can connect in between
        identity = _identity(path)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if created:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise ListenError(f"cannot listen on unix:{path}: {exc.strerror or exc}") from None
    return Listeners([sock], shared=True, unix_path=path, identity=identity)


def _remove_stale(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenError(f"cannot listen on unix:{path}: it exists and is not a socket "
                          "(not removing it)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(path)
    except ConnectionRefusedError:  # nobody listens: a crashed run's leftover
        os.unlink(path)
        return
    except BlockingIOError:
        pass  # its backlog is full: very much alive
    except OSError as exc:
        raise ListenError(f"cannot listen on unix:{path}: {exc.strerror or exc}") from None
    finally:
        probe.close()
    raise ListenError(f"cannot listen on unix:{path}: another server is listening on it")


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
