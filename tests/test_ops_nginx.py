"""deploy/nginx.conf in front of two calcserve instances, on loopback, as the current user.

The shipped configuration is used as is, except for what must differ in a test: the upstream
addresses (two instances on Unix sockets in tmp_path, as deployed; or on TCP port 0), the
listening port, and pid/log/temp paths (in tmp_path), plus `daemon off;`. Then: requests reach
both instances; one instance is stopped (SIGTERM, graceful) while clients keep sending GET and
POST requests through nginx, and none fails; and the instances log the client nginx names in
X-Forwarded-For, not nginx, however the client tries to forge it.

`nginx_config` and `start_nginx` are also what scripts/bench_ops.py measures nginx with.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ROOT, ServerProcess, read_response, running_server

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

if NGINX is None and not os.environ.get("CI"):
    pytest.skip("reason: nginx is not installed (apt-get install nginx; .ci/run installs it)",
                allow_module_level=True)


def upstream_address(server: ServerProcess) -> str:
    """How nginx names an instance: `unix:PATH` or `HOST:PORT`."""
    return f"unix:{server.uds}" if server.uds else f"{server.host}:{server.port}"


def nginx_config(tmp: Path, port: int, upstreams: list[str]) -> str:
    """deploy/nginx.conf with its upstream servers replaced by `upstreams` (nginx addresses)."""
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    servers = "".join(
        f"        server {address} max_fails=1 fail_timeout=5s;\n" for address in upstreams
    )
    text, n = re.subn(r"(?m)^ *server unix:\S+ [^\n]*\n", "", text)
    assert n >= 2, "deploy/nginx.conf: upstream server lines not found"
    text = text.replace("        zone calcserve 64k;\n", "        zone calcserve 64k;\n" + servers)
    replacements = {
        r"(?m)^pid [^;]+;": f"pid {tmp}/nginx.pid;",
        r"(?m)^error_log [^;]+;": f"error_log {tmp}/error.log info;",
        r"(?m)^( *)access_log /[^;]+;": rf"\1access_log {tmp}/access.log;",
        r"(?m)^( *)listen 8080;": rf"\1listen 127.0.0.1:{port};",
    }
    for pattern, replacement in replacements.items():
        text, n = re.subn(pattern, replacement, text)
        assert n == 1, f"deploy/nginx.conf: {pattern!r} not found"
    temp_paths = "".join(
        f"    {name}_temp_path {tmp}/{name};\n"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", "http {\n" + temp_paths, 1)
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""  # root: stay root
    return f"daemon off;\n{user}" + text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_nginx(tmp: Path, upstreams: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    assert NGINX is not None, "CI is set but nginx is missing: .ci/run installs it"
    for _ in range(5):  # the free port may be taken between probe and bind: try another
        port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(nginx_config(tmp, port, upstreams))
        proc = subprocess.Popen(
            [NGINX, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return proc, port
            except OSError:
                time.sleep(0.05)
        proc.kill()
        proc.wait(5)
    log = (tmp / "error.log").read_text() if (tmp / "error.log").exists() else ""
    raise AssertionError(f"nginx did not start; error.log:\n{log}")


@pytest.fixture(params=["unix", "tcp"])
def two_instances(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Two instances, on Unix sockets as deploy/nginx.conf has them, or on TCP."""
    def args(n: int) -> list[str]:
        return ["--uds", str(tmp_path / f"calcserve-{n}.sock")] if request.param == "unix" else []

    with running_server("asyncio", *args(1)) as first, \
            running_server("asyncio", *args(2)) as second:
        yield [first, second]


def calculate(
    port: int, sock: socket.socket | None, n: int, post: bool
) -> socket.socket | None:
    """One request through nginx on `sock` (or a new connection); returns the connection to
    reuse (None when nginx closes it, e.g. after its keepalive_requests)."""
    if sock is None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    if post:
        body = f"{n}+1".encode()
        raw = (b"POST /calculate HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
               b"Accept: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    else:
        raw = f"GET /calculate?expr={n}%2B1 HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    sock.sendall(raw)
    response = read_response(sock, bytearray())
    assert response.status == 200, (response.status, response.body[:200])
    expected = str(n + 1)
    got = response.body.decode().strip()
    assert (got if post else json.loads(got)["result"]) == expected
    if response.header("connection") == "close":
        sock.close()
        return None
    return sock


def served_by(server: ServerProcess) -> float:
    """How many /calculate requests an instance answered (its own /metrics, not via nginx)."""
    with server.connect() as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        text = read_response(sock, bytearray()).body.decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "calcserve_http_requests_total"
        and sample.labels["route"] == "/calculate"
    )


def test_nginx_balances_two_instances_and_survives_stopping_one(
    two_instances: list[ServerProcess], tmp_path: Path
) -> None:
    first, second = two_instances
    nginx, port = start_nginx(tmp_path, [upstream_address(u) for u in two_instances])
    try:
        for n in range(20):  # fresh client connections; nginx round-robins upstream
            sock = calculate(port, None, n, post=n % 2 == 0)
            if sock is not None:
                sock.close()
        assert served_by(first) > 0 and served_by(second) > 0

        stop = threading.Event()
        ok = [0] * 4
        failures: list[str] = []

        def client(index: int) -> None:
            sock: socket.socket | None = None
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    sock = calculate(port, sock, n, post=index % 2 == 0)
                    ok[index] += 1
                except (OSError, AssertionError, ValueError) as exc:
                    failures.append(repr(exc))
                    if sock is not None:
                        sock.close()
                    sock = None
            if sock is not None:
                sock.close()

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        assert first.stop() == 0  # SIGTERM: graceful; nginx retries on the other instance
        before = sum(ok)
        time.sleep(1.5)  # load continues with one instance left
        stop.set()
        for thread in threads:
            thread.join(30)
        assert failures == []
        assert sum(ok) > before + 20 and all(ok)
        assert served_by(second) > 20
    finally:
        nginx.terminate()
        nginx.wait(10)
    errors = (tmp_path / "error.log").read_text()
    assert "[emerg]" not in errors and "[alert]" not in errors, errors


def test_instances_behind_nginx_log_the_client_not_nginx(tmp_path: Path) -> None:
    """Over a Unix socket, the instance believes nginx's X-Forwarded-For (a Unix peer is
    trusted), and nginx appends the address it saw: a client on 127.0.0.2 that forges the
    header is still logged as 127.0.0.2."""
    with running_server("asyncio", "--uds", str(tmp_path / "calcserve-1.sock"),
                        "--log-format", "json") as instance:
        nginx, port = start_nginx(tmp_path, [upstream_address(instance)])
        try:
            for forged in ("", "X-Forwarded-For: 6.6.6.6\r\n", "X-Forwarded-For: junk\r\n"):
                with socket.create_connection(("127.0.0.1", port), timeout=15,
                                              source_address=("127.0.0.2", 0)) as sock:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                                 + forged.encode() + b"\r\n")
                    assert read_response(sock, bytearray()).status == 200

            def remotes() -> list[object]:
                return [json.loads(line)["remote"] for line in instance.stderr_text().splitlines()
                        if line.startswith("{")]

            deadline = time.monotonic() + 10
            while len(remotes()) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            # "6.6.6.6, 127.0.0.2" and "junk, 127.0.0.2": the walk from the right stops at the
            # first untrusted entry, the one nginx appended; what the client wrote is never read.
            assert remotes() == ["127.0.0.2"] * 3, instance.stderr_text()
        finally:
            nginx.terminate()
            nginx.wait(10)
