"""Start any of the five server modes as a real subprocess on port 0 and talk to it.

Shared by every end-to-end test: the listening line is the contract (DESIGN.md), so a mode is
"up" exactly when it has printed `listening on http://HOST:PORT` (`https://…` with TLS,
`unix:PATH` on a Unix socket).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODULES: dict[str, str] = {
    "asyncio": "app",
    "socketserver": "legacy.socketserver_server",
    "threaded": "legacy.threaded_server",
    "select": "legacy.select_server",
    "selectors": "legacy.selectors_server",
}
MODES = list(MODULES)

LISTENING = re.compile(r"^listening on (?:(?P<scheme>https?)://(?P<host>\[[^\]]+\]|[^:\s]+)"
                       r":(?P<port>\d+)|unix:(?P<uds>.+))$")
START_TIMEOUT = 20.0  # seconds; generous because CI shares 2 cores with other tests


@dataclass
class ServerProcess:
    mode: str
    proc: subprocess.Popen[str]
    host: str
    port: int
    _stderr: list[str] = field(default_factory=list)
    _pumps: list[threading.Thread] = field(default_factory=list)
    scheme: str = "http"
    uds: str | None = None  # listening on this Unix socket instead of host:port

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host.strip("[]"), self.port)

    def stderr_text(self) -> str:
        """What the server wrote to stderr so far; complete once the process has exited."""
        if self.proc.poll() is not None:
            self._drain()
        return "".join(self._stderr)

    def _drain(self) -> None:
        # The pump threads end at EOF, which follows the exit of the process (and of any
        # children holding the pipe); join them so the last lines are never missed.
        for pump in self._pumps:
            pump.join(5)

    def connect(self, timeout: float = 10.0) -> socket.socket:
        """A plain connection (TCP, or the Unix socket); TLS tests wrap it themselves."""
        if self.uds is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(self.uds)
            except BaseException:
                sock.close()
                raise
            return sock
        return socket.create_connection(self.address, timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the server and wait for it to exit; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
            self._drain()
            return code
        except subprocess.TimeoutExpired as exc:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(
                f"{self.mode} server did not exit within {timeout}s of {sig!r}"
            ) from exc


def _pump(stream: object, sink: list[str]) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        sink.append(line)


@contextlib.contextmanager
def running_server(
    mode: str,
    *args: str,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[ServerProcess]:
    """Run `python -m <module of mode> --host 127.0.0.1 --port 0 *args` until the block ends.

    `preexec_fn` runs in the child before the server starts (e.g. to lower a resource limit).
    """
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    cmd = [sys.executable, "-m", MODULES[mode], "--host", "127.0.0.1", "--port", "0", *args]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )
    stderr: list[str] = []
    assert proc.stderr is not None and proc.stdout is not None
    err_pump = threading.Thread(target=_pump, args=(proc.stderr, stderr), daemon=True)
    err_pump.start()
    deadline = time.monotonic() + START_TIMEOUT
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line or proc.poll() is not None:
            break
    match = LISTENING.match(line.strip())
    if match is None:
        proc.kill()
        proc.wait(5)
        raise AssertionError(
            f"{mode}: expected a listening line, got {line!r}; stderr:\n{''.join(stderr)}"
        )
    # Keep draining stdout so a chatty server never blocks on a full pipe.
    threading.Thread(target=_pump, args=(proc.stdout, []), daemon=True).start()
    server = ServerProcess(mode, proc, match["host"] or "", int(match["port"] or 0), stderr,
                           [err_pump], match["scheme"] or "http", match["uds"])
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def children(pid: int) -> set[int]:
    """The live child processes of `pid` (a supervisor's workers, a server's pool workers)."""
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:  # a child belongs to the thread that started it (the pool's thread)
        with contextlib.suppress(FileNotFoundError), open(
                f"/proc/{pid}/task/{task}/children") as f:
            found.update(int(child) for child in f.read().split())
    return {child for child in found if not process_gone(child)}


def process_gone(pid: int) -> bool:
    """Exited: no such process, or a zombie waiting for whoever inherited it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def recv_until_closed(sock: socket.socket, limit: int = 10 * 1024 * 1024) -> bytes:
    """Read until the peer closes (or `limit` bytes); the socket's own timeout bounds each read."""
    chunks: list[bytes] = []
    total = 0
    while total < limit:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
        total += len(data)
    return b"".join(chunks)


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


def read_response(
    sock: socket.socket, buffer: bytearray, *, head_only: bool = False
) -> RawResponse:
    """Read exactly one Content-Length-framed response from `sock`, keeping leftovers in `buffer`.

    Interim 1xx responses are returned like any other; call again for the final one.
    """
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before a full response head; got {bytes(buffer)!r}")
        buffer += data
    end = buffer.index(b"\r\n\r\n")
    head = bytes(buffer[:end]).decode("latin-1")
    del buffer[: end + 4]
    status_line, *lines = head.split("\r\n")
    _version, status, reason = [*status_line.split(" ", 2), "", ""][:3]
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    response = RawResponse(int(status), reason, headers, b"")
    if head_only or 100 <= response.status < 200 or response.status in (204, 304):
        return response
    length = int(response.header("content-length") or 0)
    while len(buffer) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed mid-body")
        buffer += data
    response.body = bytes(buffer[:length])
    del buffer[:length]
    return response


def exchange(server: ServerProcess, raw: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes on a fresh connection, half-close, and return everything until close."""
    with server.connect(timeout) as sock:
        sock.sendall(raw)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        return recv_until_closed(sock)
