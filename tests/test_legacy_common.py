"""The legacy drivers' shared helpers that no wire test can see directly."""

from __future__ import annotations

import socket

from legacy._common import no_delay


def test_no_delay_turns_nagle_off_on_accepted_tcp_sockets() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.create_connection(listener.getsockname()) as client,
    ):
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            no_delay(accepted)
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            accepted.sendall(b"x")  # still an ordinary, working socket
            assert client.recv(1) == b"x"


def test_no_delay_ignores_sockets_without_nagle() -> None:
    left, right = socket.socketpair()  # AF_UNIX: no TCP options; must not raise
    with left, right:
        no_delay(left)
        left.sendall(b"y")
        assert right.recv(1) == b"y"
