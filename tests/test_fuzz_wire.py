"""Differential fuzzing over real sockets: every driver must agree with the protocol core.

The same HTTP-shaped streams as tests/test_fuzz.py are sent to each mode in one write, followed
by a half-close. The pure core, fed the same bytes and the EOF, says how many requests the stream
holds and how it ends. The driver must answer exactly that many requests, in order, and then the
core's error status if it ended in one (each response well-formed HTTP/1.1) — unless a response
closed the connection early, which it must then say with `Connection: close`. The server must
still be alive and serving afterwards. This is where a driver that re-parsed anything itself, or
mapped an error differently, would show.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from tests.hostile_corpus import healthz_latency
from tests.support import MODES, RawResponse, ServerProcess, read_response, running_server
from tests.test_fuzz import CI_EXAMPLES, drive, http_stream

WIRE_SETTINGS = settings(
    max_examples=max(10, CI_EXAMPLES // 5),  # each example is a real connection
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@pytest.fixture(scope="module", params=MODES)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with running_server(request.param, "--header-timeout", "5", "--body-timeout", "5") as proc:
        yield proc
        assert proc.proc.poll() is None, f"{proc.mode} died: {proc.stderr_text()[-2000:]}"
    assert proc.stderr_text().count("Traceback") == 0, proc.stderr_text()[-3000:]


class Replay:
    """Just enough of a socket for `read_response` to parse captured bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, size: int) -> bytes:
        out, self.data = self.data[:size], self.data[size:]
        return out


def exchange_all(server: ServerProcess, data: bytes) -> bytes:
    with server.connect(timeout=15) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def check_wire(server: ServerProcess, data: bytes) -> None:
    requests, ending = drive([data], eof=True)
    raw = exchange_all(server, data)
    wire = Replay(raw)
    buffer = bytearray()
    responses: list[RawResponse] = []
    for request in requests:
        head_only = request.method == "HEAD"
        response = read_response(wire, buffer, head_only=head_only)  # type: ignore[arg-type]
        while response.status < 200:  # 100 Continue
            response = read_response(wire, buffer, head_only=head_only)  # type: ignore[arg-type]
        responses.append(response)
        if (response.header("connection") or "").lower() == "close":
            break
    closed_early = len(responses) < len(requests) or (
        responses and (responses[-1].header("connection") or "").lower() == "close"
    )
    if ending.kind == "error" and not closed_early:
        error = read_response(wire, buffer)  # type: ignore[arg-type]
        assert error.status == ending.status, f"core says {ending.status}, driver {error.status}"
        assert error.header("connection") == "close"
    assert bytes(buffer) + wire.data == b"", f"bytes after the last response: {wire.data[:200]!r}"


@WIRE_SETTINGS
@given(data=http_stream())
def test_driver_agrees_with_the_core(server: ServerProcess, data: bytes) -> None:
    check_wire(server, data)


def test_server_still_serves_after_the_fuzz(server: ServerProcess) -> None:
    assert healthz_latency(server.address) < 10
