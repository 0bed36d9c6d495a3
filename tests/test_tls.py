"""TLS in `python -m app` (app/tls.py, app/server.py's acceptor), with real clients.

Clients: Python's ssl + http.client, curl --cacert, openssl s_client, raw sockets for what no
polite client does (plain HTTP to the TLS port, stalled handshakes, a flood of them). The
certificates are made at test time by tests/certs.py; Chromium over TLS is in test_browser.py.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.config import Config
from app.tls import server_context
from tests.certs import OPENSSL, Pki, make_pki
from tests.support import ROOT, ServerProcess, read_response, running_server
from tests.test_ops import wait_for

SLACK = 5.0  # seconds of scheduling slack on a loaded 2-core machine
CURL = shutil.which("curl")


def tls_args(pki: Pki) -> list[str]:
    return ["--ssl-certfile", str(pki.cert), "--ssl-keyfile", str(pki.key)]


@contextlib.contextmanager
def tls_server(pki: Pki, *args: str) -> Iterator[ServerProcess]:
    with running_server("asyncio", *tls_args(pki), *args) as server:
        assert server.scheme == "https", server.url
        yield server


def client_context(ca: Path, *, alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def https(server: ServerProcess, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("localhost", server.port, context=context, timeout=10)


def calculate(conn: http.client.HTTPConnection, expr: str) -> str:
    conn.request("POST", "/calculate", body=json.dumps({"expr": expr}),
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200, (response.status, body)
    result: str = json.loads(body)["result"]
    return result


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- real clients ---------------------------------------------------------------------------------


def test_python_http_client_over_tls(pki: Pki) -> None:
    with tls_server(pki, "--log-format", "json") as server:
        conn = https(server, client_context(pki.ca, alpn=["h2", "http/1.1"]))
        try:
            for n in range(3):  # one keep-alive connection
                assert calculate(conn, f"{n}+1") == str(n + 1)
            tls_socket = conn.sock
            assert isinstance(tls_socket, ssl.SSLSocket)
            assert tls_socket.version() in ("TLSv1.2", "TLSv1.3")
            assert tls_socket.selected_alpn_protocol() == "http/1.1"  # never h2
            conn.request("GET", "/")
            page = conn.getresponse()
            assert page.status == 200 and b"<form" in page.read()
        finally:
            conn.close()
        assert wait_for(lambda: server.stderr_text().count('"remote"') >= 4)
        records = [json.loads(line) for line in server.stderr_text().splitlines()
                   if line.startswith("{")]
        assert {(r["remote"], r["scheme"]) for r in records} == {("127.0.0.1", "https")}
        assert "Traceback" not in server.stderr_text()


def require(tool: str | None, package: str) -> str:
    """The tool's path; without it, a skip with the reason (a failure when CI is set)."""
    if tool is None:
        reason = f"{package} is not installed (apt-get install {package}; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, but {reason}")
        pytest.skip(reason)
    return tool


def test_curl_with_the_test_ca(pki: Pki) -> None:
    curl = require(CURL, "curl")
    with tls_server(pki) as server:
        done = subprocess.run(
            [curl, "-sS", "--cacert", str(pki.ca), "--http2", "-w", "\n%{http_version}",
             "--data-urlencode", "expr=2^10", f"https://localhost:{server.port}/calculate"],
            capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        body, version = done.stdout.rsplit("\n", 1)
        assert json.loads(body)["result"] == "1024"
        assert version == "1.1"  # curl asked for h2; ALPN settled on http/1.1
        # Without the CA, curl refuses the certificate: the server really presents ours.
        untrusted = subprocess.run(
            [curl, "-sS", f"https://localhost:{server.port}/healthz"],
            capture_output=True, text=True, timeout=30)
        assert untrusted.returncode == 60, untrusted  # CURLE_PEER_FAILED_VERIFICATION


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_is_refused_and_1_2_accepted(pki: Pki) -> None:
    assert server_context(Config(ssl_certfile=str(pki.cert), ssl_keyfile=str(pki.key))) \
        .minimum_version == ssl.TLSVersion.TLSv1_2
    with tls_server(pki) as server:
        old = client_context(pki.ca)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client even try
        with socket.create_connection(server.address, timeout=10) as raw, \
                pytest.raises(ssl.SSLError):
            old.wrap_socket(raw, server_hostname="localhost")
        only_1_2 = client_context(pki.ca)
        only_1_2.maximum_version = ssl.TLSVersion.TLSv1_2
        conn = https(server, only_1_2)
        try:
            assert calculate(conn, "6*7") == "42"
        finally:
            conn.close()


# -- what impolite clients do ---------------------------------------------------------------------


def test_plain_http_to_the_tls_port_is_closed_cleanly(pki: Pki) -> None:
    with tls_server(pki) as server, server.connect() as raw:
        started = time.monotonic()
        raw.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        try:
            data = raw.recv(4096)
        except ConnectionResetError:
            data = b""
        assert time.monotonic() - started < SLACK  # closed at once, not at a timeout
        # OpenSSL may answer with an alert record; never with an HTTP response or a hang.
        assert not data.startswith(b"HTTP/"), data
        conn = https(server, client_context(pki.ca))
        try:
            assert calculate(conn, "1+1") == "2"  # and the server serves on
        finally:
            conn.close()
        stderr = server.stderr_text()
        assert "Traceback" not in stderr and "ERROR" not in stderr, stderr


# A TLS record header (handshake, TLS 1.0 record version, 512 bytes to follow) and nothing more:
# a ClientHello that never arrives.
PARTIAL_CLIENT_HELLO = b"\x16\x03\x01\x02\x00"


@pytest.mark.parametrize("first_bytes", [b"", PARTIAL_CLIENT_HELLO], ids=["silent", "partial"])
def test_a_stalled_handshake_is_closed_at_the_header_timeout(
    pki: Pki, first_bytes: bytes
) -> None:
    with tls_server(pki, "--header-timeout", "1") as server, server.connect() as raw:
        raw.sendall(first_bytes)
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):
            assert raw.recv(4096) == b""
        assert 0.8 < time.monotonic() - started < 1 + SLACK


def test_openssl_s_client_that_sends_no_request_is_closed_at_the_header_timeout(
    pki: Pki,
) -> None:
    openssl = require(OPENSSL, "openssl")
    with tls_server(pki, "--header-timeout", "1") as server:
        started = time.monotonic()
        client = subprocess.Popen(
            [openssl, "s_client", "-connect", f"127.0.0.1:{server.port}", "-servername",
             "localhost", "-CAfile", str(pki.ca), "-alpn", "http/1.1", "-ign_eof"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        try:  # -ign_eof: the client sends nothing and waits; only the server can end this
            out, _ = client.communicate(timeout=1 + SLACK + 5)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(5)
        elapsed = time.monotonic() - started
        assert 0.8 < elapsed < 1 + SLACK + 2, (elapsed, out)
        assert "Verify return code: 0 (ok)" in out, out
        assert "ALPN protocol: http/1.1" in out, out


def test_the_handshake_counts_against_the_header_timeout(pki: Pki) -> None:
    # Header timeout 3 s; the client waits 2.5 s before its handshake, then sends nothing. One
    # budget from accept: closed about 3 s after connecting; two budgets would say 5.5 s.
    with tls_server(pki, "--header-timeout", "3") as server, server.connect() as raw:
        started = time.monotonic()
        time.sleep(2.5)
        context = client_context(pki.ca)
        try:
            with context.wrap_socket(raw, server_hostname="localhost") as tls_sock:
                assert tls_sock.recv(4096) == b""
        except (ssl.SSLError, ConnectionResetError):
            pass  # the close came mid-handshake: closed all the same
        elapsed = time.monotonic() - started
        assert 2.9 < elapsed < 5.0, elapsed


def test_a_handshake_flood_does_not_stop_others_and_leaves_no_descriptors(pki: Pki) -> None:
    flood = 300
    with tls_server(pki, "--header-timeout", "2") as server:
        pid = server.proc.pid
        conn = https(server, client_context(pki.ca))
        assert calculate(conn, "1+1") == "2"
        conn.close()
        time.sleep(0.3)
        baseline = open_fds(pid)
        stalled: list[socket.socket] = []
        try:
            for n in range(flood):
                sock = server.connect()
                if n % 2:
                    sock.sendall(PARTIAL_CLIENT_HELLO)
                stalled.append(sock)
            assert wait_for(lambda: open_fds(pid) >= baseline + flood * 0.9, 10)
            # Meanwhile, a polite client on fresh connections is served at once, every time.
            for n in range(20):
                started = time.monotonic()
                conn = https(server, client_context(pki.ca))
                try:
                    assert calculate(conn, f"{n}*2") == str(n * 2)
                finally:
                    conn.close()
                assert time.monotonic() - started < SLACK
            # The header timeout reaps every stalled client; descriptors come back.
            assert wait_for(lambda: open_fds(pid) <= baseline, 2 + SLACK + 5), (
                open_fds(pid), baseline)
        finally:
            for sock in stalled:
                sock.close()
        assert server.proc.poll() is None
        assert "Traceback" not in server.stderr_text()


def test_handshakes_in_progress_are_bounded_by_max_connections(pki: Pki) -> None:
    with tls_server(pki, "--header-timeout", "30", "--max-connections", "40") as server:
        pid = server.proc.pid
        time.sleep(0.3)
        baseline = open_fds(pid)
        stalled = [server.connect() for _ in range(120)]
        try:
            time.sleep(1.0)
            assert open_fds(pid) <= baseline + 40 + 2  # the rest were closed at once
            closed = 0
            for sock in stalled:
                sock.settimeout(0.01)
                with contextlib.suppress(TimeoutError):
                    try:
                        closed += sock.recv(1) == b""
                    except ConnectionResetError:
                        closed += 1
            assert closed >= 120 - 40 - 2
        finally:
            for sock in stalled:
                sock.close()


# -- client certificates --------------------------------------------------------------------------


def test_client_certificates_required(pki: Pki) -> None:
    with tls_server(pki, "--ssl-ca-certs", str(pki.ca), "--ssl-cert-reqs", "required") as server:
        anonymous = client_context(pki.ca)
        with pytest.raises((ssl.SSLError, ConnectionResetError, http.client.RemoteDisconnected)):
            conn = https(server, anonymous)
            try:
                calculate(conn, "1+1")  # TLS 1.3: the refusal arrives with the first read
            finally:
                conn.close()
        known = client_context(pki.ca)
        known.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        conn = https(server, known)
        try:
            assert calculate(conn, "1+2") == "3"
        finally:
            conn.close()


def test_client_certificates_optional_lets_anonymous_clients_in(pki: Pki) -> None:
    with tls_server(pki, "--ssl-ca-certs", str(pki.ca), "--ssl-cert-reqs", "1") as server:
        conn = https(server, client_context(pki.ca))
        try:
            assert calculate(conn, "2+2") == "4"
        finally:
            conn.close()


# -- start-up errors: one line, exit status 2 -----------------------------------------------------


def _start(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", "--port", "0", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.fixture(scope="module")
def bad_files(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("bad")
    garbage = directory / "garbage.pem"
    garbage.write_text("not a certificate\n")
    encrypted = directory / "encrypted.key"
    assert OPENSSL is not None
    subprocess.run([OPENSSL, "pkey", "-in", str(pki.key), "-aes256", "-passout", "pass:secret",
                    "-out", str(encrypted)], check=True, capture_output=True)
    return {"garbage": garbage, "encrypted": encrypted}


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(("case", "expected"), [
    ("missing certificate", "cannot read --ssl-certfile"),
    ("missing key", "cannot read --ssl-keyfile"),
    ("mismatched key", "does not match the certificate"),
    ("garbage certificate", "no PEM certificate in it"),
    ("encrypted key", "is encrypted"),
    ("key without certificate", "--ssl-keyfile needs --ssl-certfile"),
    ("required without CAs", "--ssl-cert-reqs required needs --ssl-ca-certs"),
])
def test_bad_tls_options_are_one_line_and_exit_2(
    pki: Pki, bad_files: dict[str, Path], tmp_path: Path, case: str, expected: str, workers: str
) -> None:
    cert, key = str(pki.cert), str(pki.key)
    args = {
        "missing certificate": ["--ssl-certfile", str(tmp_path / "nope.pem"), "--ssl-keyfile", key],
        "missing key": ["--ssl-certfile", cert, "--ssl-keyfile", str(tmp_path / "nope.key")],
        "mismatched key": ["--ssl-certfile", cert, "--ssl-keyfile", str(pki.other_key)],
        "garbage certificate": ["--ssl-certfile", str(bad_files["garbage"]),
                                "--ssl-keyfile", key],
        "encrypted key": ["--ssl-certfile", cert, "--ssl-keyfile", str(bad_files["encrypted"])],
        "key without certificate": ["--ssl-keyfile", key],
        "required without CAs": [*tls_args(pki), "--ssl-cert-reqs", "required"],
    }[case]
    done = _start(*args, "--workers", workers)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr
    assert "listening on" not in done.stdout


# -- certificate renewal: SIGHUP re-reads the files -----------------------------------------------


def presented_ca(server: ServerProcess, cas: dict[str, Path]) -> str:
    """Which CA signed the certificate a fresh connection is shown (by whose CA verifies it)."""
    for name, ca in cas.items():
        with socket.create_connection(server.address, timeout=10) as raw:
            try:
                with client_context(ca).wrap_socket(raw, server_hostname="localhost"):
                    return name
            except ssl.SSLCertVerificationError:
                continue
    raise AssertionError("no CA verifies the served certificate")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sighup_rereads_the_certificate(pki: Pki, tmp_path: Path, workers: str) -> None:
    renewed = make_pki(tmp_path / "renewed")
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "cert.pem", live / "key.pem"
    shutil.copy(pki.cert, cert)
    shutil.copy(pki.key, key)
    cas = {"old": pki.ca, "renewed": renewed.ca}
    with running_server("asyncio", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
                        "--workers", workers) as server:
        assert presented_ca(server, cas) == "old"
        shutil.copy(renewed.cert, cert)
        shutil.copy(renewed.key, key)
        server.proc.send_signal(signal.SIGHUP)
        done = "reload complete" if workers == "2" else "certificate re-read"
        assert wait_for(lambda: done in server.stderr_text(), 30), server.stderr_text()
        assert presented_ca(server, cas) == "renewed"
        # A broken renewal never takes the server down: the certificate in use stays.
        key.write_text("truncated\n")
        server.proc.send_signal(signal.SIGHUP)
        kept = "keeping the old workers" if workers == "2" else "keeping the certificate in use"
        assert wait_for(lambda: kept in server.stderr_text(), 30), server.stderr_text()
        assert presented_ca(server, cas) == "renewed"
        assert server.stop() == 0


def test_tls_with_workers_serves_from_every_worker(pki: Pki) -> None:
    with tls_server(pki, "--workers", "2") as server:
        for n in range(40):  # fresh connections: the kernel spreads them over both workers
            conn = https(server, client_context(pki.ca))
            try:
                assert calculate(conn, f"{n}+0") == str(n)
            finally:
                conn.close()
        conn = https(server, client_context(pki.ca))
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            text = response.read().decode()
        finally:
            conn.close()
        busy = [family for family in text_string_to_metric_families(text)
                if family.name == "calcserve_worker_requests"]
        assert len([s for s in busy[0].samples if s.value > 0]) == 2, text
        assert server.stop() == 0


def test_pipelined_requests_over_tls(pki: Pki) -> None:
    with tls_server(pki) as server, server.connect() as raw, \
            client_context(pki.ca).wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(b"".join(
            f"GET /calculate?expr={n}%2B1 HTTP/1.1\r\nHost: t\r\n\r\n".encode()
            for n in range(50)))
        buffer = bytearray()
        for n in range(50):
            response = read_response(sock, buffer)
            assert response.status == 200
            assert json.loads(response.body)["result"] == str(n + 1)


def test_a_slow_tls_client_does_not_hold_others(pki: Pki) -> None:
    """A TLS client trickling its head one byte at a time, beside a normal one."""
    with tls_server(pki) as server, server.connect() as raw:
        slow = client_context(pki.ca).wrap_socket(raw, server_hostname="localhost")
        stop = threading.Event()

        def trickle() -> None:
            with contextlib.suppress(OSError):
                for byte in b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n":
                    if stop.wait(0.05):
                        return
                    slow.sendall(bytes([byte]))

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        try:
            conn = https(server, client_context(pki.ca))
            try:
                for n in range(10):
                    assert calculate(conn, f"{n}-1") == str(n - 1)
            finally:
                conn.close()
            thread.join(10)
            assert read_response(slow, bytearray()).status == 200
        finally:
            stop.set()
            slow.close()


def test_shutdown_does_not_wait_for_stalled_handshakes(pki: Pki) -> None:
    with tls_server(pki, "--header-timeout", "30") as server:
        stalled = [server.connect() for _ in range(10)]
        try:
            time.sleep(0.3)
            started = time.monotonic()
            assert server.stop() == 0
            # DRAIN_FIRST_REQUEST_GRACE (1 s), not the 30 s header timeout.
            assert time.monotonic() - started < 1 + SLACK
        finally:
            for sock in stalled:
                sock.close()
