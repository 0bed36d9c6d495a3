"""Where `python -m app` listens (app/listen.py): Unix sockets, inherited sockets (--fd, systemd
socket activation through LISTEN_FDS), and a restart behind a socket that stays open.

Everything runs the real CLI as a subprocess. Socket activation is tested twice: with Debian's
`systemd-socket-activate` (systemd's own implementation of the protocol), and with a launcher
in the test that holds the listening socket while the server is stopped and started again, as
systemd does for a `.socket` unit.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.listen import SD_LISTEN_FDS_START, ListenError, bind_unix, inherited_descriptors
from tests.support import (
    LISTENING,
    ROOT,
    START_TIMEOUT,
    ServerProcess,
    read_response,
    running_server,
)
from tests.test_ops import Load, children, fetch, request, wait_for
from tests.test_tls import require

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")


def short_path(tmp_path: Path, name: str) -> str:
    """A socket path under the 108-byte sun_path limit (pytest's tmp paths can be long)."""
    path = str(tmp_path / name)
    assert len(path) < 100, path
    return path


def get(server: ServerProcess, target: str = "/calculate?expr=1%2B2") -> tuple[int, bytes]:
    response = fetch(server, target)
    return response.status, response.body


# -- Unix domain sockets --------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_uds_serves_and_removes_its_socket_at_exit(tmp_path: Path, workers: str) -> None:
    path = short_path(tmp_path, "calc.sock")
    with running_server("asyncio", "--uds", path, "--workers", workers) as server:
        assert server.uds == path  # `listening on unix:PATH`
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660  # the default --uds-mode
        status, body = get(server)
        assert status == 200 and b'"result":"3"' in body
        if workers == "2":
            assert len(children(server.proc.pid)) == 2
        assert server.stop() == 0
    assert not os.path.exists(path)


def test_uds_mode_sets_the_permissions(tmp_path: Path) -> None:
    path = short_path(tmp_path, "calc.sock")
    with running_server("asyncio", "--uds", path, "--uds-mode", "600") as server:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert get(server)[0] == 200


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = short_path(tmp_path, "calc.sock")
    crashed = socket.socket(socket.AF_UNIX)
    crashed.bind(path)  # what a crashed run leaves: the file, and nobody listening
    crashed.close()
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    with running_server("asyncio", "--uds", path) as server:
        assert get(server)[0] == 200
        assert "Traceback" not in server.stderr_text()


def _start(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_live_socket_is_an_error_and_left_alone(tmp_path: Path, workers: str) -> None:
    path = short_path(tmp_path, "calc.sock")
    with running_server("asyncio", "--uds", path) as first:
        done = _start("--uds", path, "--workers", workers)
        assert done.returncode == 1, done
        assert f"cannot listen on unix:{path}: another server is listening on it" in done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert get(first)[0] == 200  # the running server never noticed


@pytest.mark.parametrize("kind", ["file", "directory", "symlink"])
def test_a_path_that_is_not_a_socket_is_never_removed(tmp_path: Path, kind: str) -> None:
    path = Path(short_path(tmp_path, "calc.sock"))
    if kind == "file":
        path.write_text("precious\n")
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(tmp_path / "elsewhere")
    done = _start("--uds", str(path))
    assert done.returncode == 1, done
    assert "exists and is not a socket (not removing it)" in done.stderr, done.stderr
    assert os.path.lexists(path)
    if kind == "file":
        assert path.read_text() == "precious\n"


def test_bind_unix_reports_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ListenError, match=r"cannot listen on unix:.*No such file or directory"):
        bind_unix(str(tmp_path / "missing" / "calc.sock"), 0o660, 8)


def test_uds_with_workers_reloads_without_a_failed_request(tmp_path: Path) -> None:
    path = short_path(tmp_path, "calc.sock")
    with running_server("asyncio", "--uds", path, "--workers", "2") as server, \
            Load(server) as load:
        assert wait_for(lambda: load.count() > 20)
        before = children(server.proc.pid)
        server.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload complete" in server.stderr_text())
        after = load.count()
        assert wait_for(lambda: load.count() > after + 20)
        load.stop()
        assert load.failures == []
        # The old workers drain their connections and exit after "reload complete".
        assert wait_for(lambda: children(server.proc.pid).isdisjoint(before))


# -- inherited sockets: --fd and LISTEN_FDS ----------------------------------------------------


def test_inherited_descriptors_follow_the_sd_listen_fds_protocol() -> None:
    ours = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}
    assert inherited_descriptors(None, ours) == [SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + 1]
    assert ours == {}  # consumed, so a program we start does not think it was activated
    theirs = {"LISTEN_PID": "1", "LISTEN_FDS": "1"}
    assert inherited_descriptors(None, theirs) == [] and theirs["LISTEN_FDS"] == "1"
    assert inherited_descriptors(7, {}) == [7]  # --fd wins over the environment
    with pytest.raises(ListenError, match="LISTEN_FDS='x' is not a number"):
        inherited_descriptors(None, {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "x"})


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    return sock


@contextlib.contextmanager
def launched(argv: list[str], pass_fds: tuple[int, ...] = (),
             env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """Run `argv` (a server that was handed its socket) until the block ends."""
    proc = subprocess.Popen(argv, cwd=ROOT, pass_fds=pass_fds, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    stderr: list[str] = []
    out, err = proc.stdout, proc.stderr
    assert out is not None and err is not None
    pump = threading.Thread(target=lambda: stderr.extend(iter(err.readline, "")), daemon=True)
    pump.start()
    try:
        line = out.readline().strip()
        match = LISTENING.match(line)
        assert match is not None, (line, proc.poll(), "".join(stderr))
        threading.Thread(target=out.read, daemon=True).start()  # never block on a full pipe
        yield ServerProcess("asyncio", proc, match["host"], int(match["port"]), stderr, [pump])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def test_fd_serves_on_an_inherited_socket(tmp_path: Path) -> None:
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        fd = sock.fileno()
        argv = [sys.executable, "-m", "app", "--fd", str(fd)]
        with launched(argv, pass_fds=(fd,)) as server:
            assert (server.host, server.port) == ("127.0.0.1", port)
            assert get(server)[0] == 200
            assert server.stop() == 0
        # The launcher still holds the socket: connections queue for the next server.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


@pytest.mark.parametrize("what", ["file", "unbound socket"])
def test_fd_that_is_not_a_listening_socket_is_one_clear_line(tmp_path: Path, what: str) -> None:
    with contextlib.ExitStack() as stack:
        if what == "file":
            fd = stack.enter_context(open(tmp_path / "f", "w")).fileno()
        else:
            fd = stack.enter_context(socket.socket()).fileno()
        done = subprocess.run([sys.executable, "-m", "app", "--fd", str(fd)], pass_fds=(fd,),
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1, done
    expected = "not a socket" if what == "file" else "not a listening stream socket"
    assert f"cannot listen on descriptor {fd}: {expected}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_uds_and_fd_together_are_a_usage_error(tmp_path: Path) -> None:
    done = _start("--uds", str(tmp_path / "s"), "--fd", "3")
    assert done.returncode == 2 and "--uds and --fd" in done.stderr, done


# Exec'd in the child: moves the socket to descriptor 3, sets LISTEN_FDS=1 and LISTEN_PID to
# its own pid, and becomes the server (exec keeps the pid), as systemd does for a service.
_ACTIVATE = f"""
import os, sys
fd = int(sys.argv[1])
os.dup2(fd, {SD_LISTEN_FDS_START})
os.close(fd)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execv(sys.argv[2], sys.argv[2:])
"""


def socket_activated(argv: list[str], sock: socket.socket) -> list[str]:
    """`argv` run the way systemd runs a socket-activated service (see _ACTIVATE)."""
    return [sys.executable, "-c", _ACTIVATE, str(sock.fileno()), *argv]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_restart_behind_a_held_socket_refuses_no_connection(workers: str) -> None:
    """systemd's `.socket` unit in miniature: the socket outlives the server; the server is
    stopped and started again under load, and no client is refused or fails."""
    with listening_socket() as sock:
        argv = socket_activated([sys.executable, "-m", "app", "--workers", workers], sock)
        first = launched(argv, pass_fds=(sock.fileno(),))
        server = first.__enter__()
        assert server.port == sock.getsockname()[1]
        with Load(server, threads=4) as load:
            assert wait_for(lambda: load.count() > 20)
            assert server.stop() == 0  # graceful; the socket stays open in the launcher
            first.__exit__(None, None, None)
            stopped_at = load.count()
            time.sleep(0.5)  # no server at all for a while: clients wait in the backlog
            with launched(argv, pass_fds=(sock.fileno(),)) as second:
                assert second.port == server.port
                assert wait_for(lambda: load.count() > stopped_at + 20)
                load.stop()
        refused = [f for f in load.failures if "Refused" in f]
        assert refused == [] and load.failures == [], load.failures


@pytest.mark.parametrize("workers", ["1", "2"])
def test_systemd_socket_activate_starts_the_server_on_the_first_connection(workers: str) -> None:
    activate = require(SOCKET_ACTIVATE, "systemd")
    for _ in range(5):  # the probed port may be taken before the activator binds it
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        proc = subprocess.Popen(
            [activate, "-l", f"127.0.0.1:{port}", "-E", "PYTHONUNBUFFERED=1",
             sys.executable, "-m", "app", "--workers", workers, "--port", "1"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None and proc.stdout is not None
        first = proc.stderr.readline()
        if f"Listening on 127.0.0.1:{port}" in first:
            break
        proc.kill()
        proc.wait(5)
    else:
        raise AssertionError("systemd-socket-activate did not start")
    try:
        # The first client connects before any server runs: it waits in the backlog, is not
        # refused, and is answered once the activated server is up (--port 1 is ignored).
        with socket.create_connection(("127.0.0.1", port), timeout=START_TIMEOUT) as sock:
            sock.sendall(request("GET", "/calculate?expr=20%2B1", close=True))
            response = read_response(sock, bytearray())
        assert response.status == 200 and b'"result":"21"' in response.body
        line = proc.stdout.readline().strip()
        assert line == f"listening on http://127.0.0.1:{port}", line
        if workers == "2":
            assert wait_for(lambda: len(children(proc.pid)) == 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "Traceback" not in proc.stderr.read()


def test_listen_fds_for_another_process_is_ignored() -> None:
    """A LISTEN_PID that is not ours (we were started by an activated process, say): bind as
    told, and leave descriptor 3 alone."""
    with running_server("asyncio", env={"LISTEN_PID": "1", "LISTEN_FDS": "1"}) as server:
        assert get(server)[0] == 200
        assert re.search(r"\d+$", server.url)
