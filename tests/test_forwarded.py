"""app/forwarded.py through its public API: which client a request names, from which peer.

Tables of (peer, header lines) -> client; requests are parsed from raw bytes by the protocol
core, exactly as the server builds them. Then the same over real sockets: what `python -m app`'s
access log shows for a trusted proxy, for a spoofer on 127.0.0.2, and for malformed headers.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from app.forwarded import MAX_HOPS, UNIX_PEER, Client, ProxyTrust, client, parse_address
from app.protocol import Connection, Request
from tests.support import ROOT, ServerProcess, read_response, running_server
from tests.test_ops import wait_for

DEFAULT = ProxyTrust("127.0.0.1")  # the --forwarded-allow-ips default
PROXIES = ProxyTrust("127.0.0.1, 10.0.0.0/8, ::1")
EVERYONE = ProxyTrust("*")


def request(*fields: str) -> Request:
    conn = Connection()
    conn.receive_data(("GET / HTTP/1.1\r\nHost: t\r\n" + "".join(f + "\r\n" for f in fields)
                       + "\r\n").encode("latin-1"))
    event = conn.next_event()
    assert isinstance(event, Request)
    return event


def resolve(peer: str, *fields: str, trust: ProxyTrust = DEFAULT,
            scheme: str = "http") -> tuple[str, str]:
    return tuple(client(Client(peer, scheme), request(*fields), trust))  # type: ignore[return-value]


@pytest.mark.parametrize(("peer", "fields", "expected"), [
    # No header: the peer.
    ("127.0.0.1", [], ("127.0.0.1", "http")),
    # A trusted peer's X-Forwarded-For names the client.
    ("127.0.0.1", ["X-Forwarded-For: 203.0.113.7"], ("203.0.113.7", "http")),
    ("127.0.0.1", ["X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https"],
     ("203.0.113.7", "https")),
    ("127.0.0.1", ["X-Forwarded-Proto: HTTPS"], ("127.0.0.1", "https")),
    # The right-most untrusted entry: what the client wrote to the left proves nothing.
    ("127.0.0.1", ["X-Forwarded-For: 6.6.6.6, 203.0.113.7"], ("203.0.113.7", "http")),
    # Trusted hops are skipped from the right (with PROXIES below); with the default, the
    # right-most entry 10.0.0.2 is not trusted, so it is the client.
    ("127.0.0.1", ["X-Forwarded-For: 203.0.113.7, 10.0.0.2"], ("10.0.0.2", "http")),
    # Several lines are one list, in order.
    ("127.0.0.1", ["X-Forwarded-For: 6.6.6.6", "X-Forwarded-For: 203.0.113.7"],
     ("203.0.113.7", "http")),
    # Ports and brackets are accepted; the address is shown normalised.
    ("127.0.0.1", ["X-Forwarded-For: 203.0.113.7:5000"], ("203.0.113.7", "http")),
    ("127.0.0.1", ["X-Forwarded-For: [2001:DB8::1]:443"], ("2001:db8::1", "http")),
    ("127.0.0.1", ["X-Forwarded-For: 2001:db8::1"], ("2001:db8::1", "http")),
    # An untrusted peer: every forwarding header is ignored (the spoofing case).
    ("127.0.0.2", ["X-Forwarded-For: 6.6.6.6", "X-Forwarded-Proto: https"],
     ("127.0.0.2", "http")),
    ("127.0.0.2", ["Forwarded: for=6.6.6.6;proto=https"], ("127.0.0.2", "http")),
    ("192.0.2.1", ["X-Forwarded-For: 127.0.0.1"], ("192.0.2.1", "http")),
    # Malformed: ignored, the peer is used.
    ("127.0.0.1", ["X-Forwarded-For: not-an-address"], ("127.0.0.1", "http")),
    ("127.0.0.1", ["X-Forwarded-For: 203.0.113.7, garbage"], ("127.0.0.1", "http")),
    ("127.0.0.1", ["X-Forwarded-For: "], ("127.0.0.1", "http")),
    ("127.0.0.1", ["X-Forwarded-For: ,"], ("127.0.0.1", "http")),
    ("127.0.0.1", ["X-Forwarded-For: 203.0.113.7:http"], ("127.0.0.1", "http")),
    ("127.0.0.1", ["X-Forwarded-For: 203.0.113.7:99999999"], ("127.0.0.1", "http")),
    ("127.0.0.1", ["X-Forwarded-For: [::1"], ("127.0.0.1", "http")),
    ("127.0.0.1", ["X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: gopher"],
     ("203.0.113.7", "http")),
    ("127.0.0.1", ["X-Forwarded-Proto: https, http"], ("127.0.0.1", "http")),
    # RFC 7239 Forwarded.
    ("127.0.0.1", ["Forwarded: for=203.0.113.7"], ("203.0.113.7", "http")),
    ("127.0.0.1", ["Forwarded: for=203.0.113.7;proto=https;by=127.0.0.1"],
     ("203.0.113.7", "https")),
    ("127.0.0.1", ['Forwarded: For="[2001:db8:cafe::17]:4711"'], ("2001:db8:cafe::17", "http")),
    ("127.0.0.1", ["Forwarded: for=6.6.6.6, for=203.0.113.7;proto=https"],
     ("203.0.113.7", "https")),
    ("127.0.0.1", ["Forwarded: for=6.6.6.6", "Forwarded: for=203.0.113.7"],
     ("203.0.113.7", "http")),
    # Forwarded's proto beats X-Forwarded-Proto; X-Forwarded-Proto fills in when it has none.
    ("127.0.0.1", ["Forwarded: for=203.0.113.7;proto=http", "X-Forwarded-Proto: https"],
     ("203.0.113.7", "http")),
    ("127.0.0.1", ["Forwarded: for=203.0.113.7", "X-Forwarded-Proto: https"],
     ("203.0.113.7", "https")),
    # Both headers: X-Forwarded-For wins (see the module docstring for why).
    ("127.0.0.1", ["Forwarded: for=6.6.6.6", "X-Forwarded-For: 203.0.113.7"],
     ("203.0.113.7", "http")),
    # Malformed Forwarded: ignored.
    ("127.0.0.1", ["Forwarded: for=unknown"], ("127.0.0.1", "http")),
    ("127.0.0.1", ["Forwarded: for=_hidden"], ("127.0.0.1", "http")),
    ("127.0.0.1", ["Forwarded: for=[::1]"], ("127.0.0.1", "http")),  # must be quoted
    ("127.0.0.1", ["Forwarded: for=1.2.3.4;for=5.6.7.8"], ("127.0.0.1", "http")),
    ("127.0.0.1", ["Forwarded: for=1.2.3.4 junk"], ("127.0.0.1", "http")),
    ("127.0.0.1", ['Forwarded: for="1.2.3.4'], ("127.0.0.1", "http")),
    ("127.0.0.1", ["Forwarded: proto=https"], ("127.0.0.1", "http")),
    ("127.0.0.1", ["Forwarded: ;;,"], ("127.0.0.1", "http")),
    ("127.0.0.1", ["Forwarded: for=6.6.6.6, for=unknown"], ("127.0.0.1", "http")),
])
def test_default_trust(peer: str, fields: list[str], expected: tuple[str, str]) -> None:
    assert resolve(peer, *fields) == expected


@pytest.mark.parametrize(("peer", "fields", "expected"), [
    ("10.1.2.3", ["X-Forwarded-For: 203.0.113.7, 10.0.0.2"], "203.0.113.7"),
    ("::1", ["X-Forwarded-For: 203.0.113.7, 10.0.0.2, 127.0.0.1"], "203.0.113.7"),
    # Every hop trusted: the left-most is the client (uvicorn's rule).
    ("10.1.2.3", ["X-Forwarded-For: 10.0.0.5, 10.0.0.2"], "10.0.0.5"),
    ("10.1.2.3", ["Forwarded: for=203.0.113.7, for=10.0.0.2"], "203.0.113.7"),
    ("10.1.2.3", ["Forwarded: for=10.0.0.9, for=10.0.0.2"], "10.0.0.9"),
    # IPv4 peer seen through a dual-stack socket.
    ("::ffff:10.9.9.9", ["X-Forwarded-For: 203.0.113.7"], "203.0.113.7"),
    ("11.0.0.1", ["X-Forwarded-For: 203.0.113.7"], "11.0.0.1"),
])
def test_networks_and_hops(peer: str, fields: list[str], expected: str) -> None:
    assert resolve(peer, *fields, trust=PROXIES)[0] == expected


def test_everyone_takes_the_left_most() -> None:
    assert resolve("192.0.2.1", "X-Forwarded-For: 203.0.113.7, 10.0.0.2",
                   trust=EVERYONE)[0] == "203.0.113.7"
    assert resolve("192.0.2.1", "Forwarded: for=203.0.113.7, for=10.0.0.2",
                   trust=EVERYONE)[0] == "203.0.113.7"
    assert resolve("192.0.2.1", "X-Forwarded-For: junk, 10.0.0.2",
                   trust=EVERYONE)[0] == "192.0.2.1"


def test_a_unix_socket_peer_is_trusted_unless_proxy_headers_are_off() -> None:
    assert resolve(UNIX_PEER, "X-Forwarded-For: 203.0.113.7")[0] == "203.0.113.7"
    assert resolve(UNIX_PEER, "X-Forwarded-For: 203.0.113.7",
                   trust=ProxyTrust("", enabled=False))[0] == UNIX_PEER
    assert resolve("127.0.0.1", "X-Forwarded-For: 203.0.113.7",
                   trust=ProxyTrust("*", enabled=False))[0] == "127.0.0.1"


def test_an_empty_list_trusts_no_tcp_peer() -> None:
    assert resolve("127.0.0.1", "X-Forwarded-For: 203.0.113.7", trust=ProxyTrust(""))[0] == (
        "127.0.0.1")


def test_the_walk_is_bounded() -> None:
    trusted_hops = ", ".join(["10.0.0.1"] * MAX_HOPS)
    assert resolve("10.1.1.1", f"X-Forwarded-For: 203.0.113.7, {trusted_hops}",
                   trust=PROXIES)[0] == "10.1.1.1"
    fewer = ", ".join(["10.0.0.1"] * (MAX_HOPS - 1))
    assert resolve("10.1.1.1", f"X-Forwarded-For: 203.0.113.7, {fewer}",
                   trust=PROXIES)[0] == "203.0.113.7"


def test_no_header_returns_the_connection_itself() -> None:
    own = Client("127.0.0.1", "https")
    assert client(own, request(), DEFAULT) is own
    assert client(own, request("X-Forwarded-For: junk"), DEFAULT) is own


@pytest.mark.parametrize("spec", ["10.0.0.0/33", "localhost", "1.2.3.4.5", "10.0.0.0/8, nope"])
def test_bad_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="neither an IP address nor a CIDR network"):
        ProxyTrust(spec)


@pytest.mark.parametrize(("text", "expected"), [
    ("1.2.3.4", "1.2.3.4"), ("1.2.3.4:80", "1.2.3.4"), ("::1", "::1"), ("[::1]", "::1"),
    ("[::1]:80", "::1"), ("[::1]80", None), ("1.2.3.4:", None), ("1.2.3.4:８０", None),
    ("", None), ("unknown", None), ("[]", None),
])
def test_parse_address(text: str, expected: str | None) -> None:
    address = parse_address(text)
    assert (None if address is None else str(address)) == expected


# -- over real sockets: what the access log shows -------------------------------------------------


def access_records(server: ServerProcess, count: int) -> list[dict[str, object]]:
    """The first `count` JSON access-log lines (waiting for them: they are written in batches)."""
    def records() -> list[dict[str, object]]:
        return [json.loads(line) for line in server.stderr_text().splitlines()
                if line.startswith("{")]

    assert wait_for(lambda: len(records()) >= count), server.stderr_text()
    return records()[:count]


def send_from(server: ServerProcess, source: str, *fields: str) -> int:
    """GET /healthz from loopback address `source` with `fields`; returns the status."""
    with socket.create_connection(server.address, timeout=10,
                                  source_address=(source, 0)) as sock:
        sock.sendall(("GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                      + "".join(f + "\r\n" for f in fields) + "\r\n").encode())
        return read_response(sock, bytearray()).status


def test_the_access_log_shows_the_forwarded_client_and_ignores_spoofers() -> None:
    forged = ("X-Forwarded-For: 6.6.6.6", "X-Forwarded-Proto: https",
              "Forwarded: for=6.6.6.6;proto=https")
    with running_server("asyncio", "--log-format", "json") as server:
        # The default trusts 127.0.0.1 only: a proxy on this machine.
        assert send_from(server, "127.0.0.1", "X-Forwarded-For: 203.0.113.7",
                         "X-Forwarded-Proto: https") == 200
        # 127.0.0.2 is loopback too, but not trusted: forged headers change nothing.
        assert send_from(server, "127.0.0.2", *forged) == 200
        # A malformed header from the trusted proxy is ignored, and the request served.
        assert send_from(server, "127.0.0.1", "X-Forwarded-For: ::not an address::") == 200
        assert send_from(server, "127.0.0.1", 'Forwarded: for="unterminated') == 200
        records = access_records(server, 4)
    assert [(r["remote"], r["scheme"]) for r in records] == [
        ("203.0.113.7", "https"), ("127.0.0.2", "http"), ("127.0.0.1", "http"),
        ("127.0.0.1", "http")]


@pytest.mark.parametrize(("args", "expected"), [
    (["--forwarded-allow-ips", "127.0.0.2"], "203.0.113.7"),
    (["--forwarded-allow-ips", "127.0.0.0/8"], "203.0.113.7"),
    (["--forwarded-allow-ips", "*"], "203.0.113.7"),
    (["--forwarded-allow-ips", "*", "--no-proxy-headers"], "127.0.0.2"),
    (["--forwarded-allow-ips", ""], "127.0.0.2"),
])
def test_forwarded_allow_ips_chooses_whom_to_believe(args: list[str], expected: str) -> None:
    with running_server("asyncio", "--log-format", "json", *args) as server:
        assert send_from(server, "127.0.0.2", "X-Forwarded-For: 203.0.113.7") == 200
        assert access_records(server, 1)[0]["remote"] == expected


def test_environment_sets_the_trusted_proxies() -> None:
    with running_server("asyncio", "--log-format", "json",
                        env={"CALCSERVE_FORWARDED_ALLOW_IPS": "127.0.0.2"}) as server:
        assert send_from(server, "127.0.0.2", "Forwarded: for=198.51.100.9") == 200
        assert access_records(server, 1)[0]["remote"] == "198.51.100.9"


def test_a_bad_forwarded_allow_ips_is_a_usage_error() -> None:
    done = subprocess.run([sys.executable, "-m", "app", "--forwarded-allow-ips", "10.0.0.0/33"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and "neither an IP address nor a CIDR network" in done.stderr
