"""Who the client is behind a proxy: `Forwarded` / `X-Forwarded-For` from trusted peers only.

Pure: a peer address, a request's header fields and the trusted networks in; the client's
address and scheme out. No sockets, no I/O.

    trust = ProxyTrust("127.0.0.1, 10.0.0.0/8")         # --forwarded-allow-ips
    client(Client("127.0.0.1", "http"), request, trust) # -> Client("203.0.113.7", "https")

The rules (uvicorn's and gunicorn's, plus RFC 7239):

- The headers count only when the connection's peer is trusted: an address or network of
  `--forwarded-allow-ips`, or `*` for everyone. A peer on a Unix socket is always trusted
  (gunicorn's rule): who may connect to the socket file is decided by its permissions
  (`--uds-mode`), and the proxy in front is the only one that can. From any other peer the
  headers are ignored, whatever they say.
- `X-Forwarded-For: client, proxy1, proxy2`: every proxy appends the address it received the
  request from, so the list is read from the right and the client is the right-most address
  that is not itself trusted (the entries to its left were written by the client and prove
  nothing). When every entry is trusted, the left-most is the client (uvicorn's rule). With
  `*`, the left-most.
- `Forwarded: for=192.0.2.60;proto=https, for="[2001:db8::1]:4711"` (RFC 7239) is read the same
  way, from its `for=` parameters, and the chosen element's `proto=` gives the scheme.
- When both are present, `X-Forwarded-For` wins. Any proxy that writes one header and passes
  the other through from the client leaves the other forgeable; `X-Forwarded-For` is the one
  nginx, HAProxy, cloud balancers and our own deploy/nginx.conf write, so a typical deployment
  is safe. (A proxy that writes only `Forwarded` must delete a client's `X-Forwarded-For`.)
- `X-Forwarded-Proto: https` (one token, `http` or `https`, as uvicorn) sets the scheme, unless
  `Forwarded` already gave it.
- A header that does not parse (a garbage entry, `unknown` or an obfuscated node where the
  client would be, a port that is not a number, more than MAX_HOPS entries to walk) is
  ignored: the peer's address is used and the request is served as usual.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from typing import Final, NamedTuple

from app.protocol import Request

# What a connection over a Unix socket reports as its peer (nginx's $remote_addr says the same).
UNIX_PEER: Final = "unix:"
# Entries of one forwarding header walked at most. A real chain is a handful of proxies; the
# bound keeps the work per request small (~1 us an entry) even for a 16 KiB header of them.
MAX_HOPS: Final = 32
# Distinct addresses whose trust, and header entries whose parse, are remembered (uvicorn's
# trust cache is 4096 entries as well): bounded, so a client cycling through addresses cannot
# grow them. Parsing an address costs ~2 us (ipaddress); behind a proxy every request carries
# one, and the same clients come back, so a hit (~0.1 us) is the common case.
TRUST_CACHE: Final = 4096
# Schemes X-Forwarded-Proto and Forwarded's proto= may set; anything else is ignored.
SCHEMES: Final = frozenset({"http", "https"})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Client(NamedTuple):
    """The client of one request: its address (as text) and the scheme it used."""

    host: str
    scheme: str


class ProxyTrust:
    """The peers whose forwarding headers are believed: `--forwarded-allow-ips`.

    `spec` is a comma list of addresses and CIDR networks (`127.0.0.1, 10.0.0.0/8, ::1`), or
    `*` for every peer; an empty spec trusts no TCP peer. Raises ValueError for an entry that is
    neither an address nor a network. `enabled=False` (--no-proxy-headers) trusts nobody, not
    even a Unix-socket peer.
    """

    __slots__ = ("_cached", "everyone", "networks", "nobody", "spec")

    def __init__(self, spec: str, *, enabled: bool = True) -> None:
        self.spec = spec
        self.nobody = not enabled
        entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
        self.everyone = "*" in entries
        self.networks: list[IPNetwork] = []
        for entry in entries:
            if entry == "*":
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is neither an IP address nor a CIDR network, "
                                 "nor *") from None
        self._cached = functools.lru_cache(maxsize=TRUST_CACHE)(self._compute)

    def trusts(self, host: str) -> bool:
        """Whether `host` (an address as text, or UNIX_PEER) is a trusted proxy."""
        if self.nobody:
            return False
        if self.everyone or host == UNIX_PEER:
            return True
        return bool(self._cached(host))

    def _compute(self, host: str) -> bool:
        address = parse_address(host)
        if address is None:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
        return any(address in network for network in self.networks)

    def __repr__(self) -> str:
        return f"ProxyTrust({self.spec!r}, enabled={not self.nobody})"


def client(own: Client, request: Request, trust: ProxyTrust) -> Client:
    """The client of `request`, received on a connection from `own.host` with `own.scheme`.

    `own` itself when the peer is not trusted or sent no forwarding header (no allocation on
    the common path); the forwarded address and scheme otherwise.
    """
    header = request.header
    forwarded_for, forwarded, proto = (
        header("x-forwarded-for"), header("forwarded"), header("x-forwarded-proto"))
    if ((forwarded_for is None and forwarded is None and proto is None)
            or not trust.trusts(own.host)):
        return own  # the common cases, first: no header at all, or nobody to believe
    host: str | None = None
    scheme: str | None = None
    if forwarded_for is not None:
        host = _from_x_forwarded_for(_values(request.headers, "x-forwarded-for"), trust)
    elif forwarded is not None:
        host, scheme = _from_forwarded(_values(request.headers, "forwarded"), trust)
    if scheme is None and proto is not None:
        scheme = _scheme(proto)
    if host is None and scheme is None:
        return own
    return Client(host or own.host, scheme or own.scheme)


def parse_address(text: str) -> IPAddress | None:
    """An IP address, or None: accepts `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]` and `[::1]:80`."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not _is_port_suffix(text[end + 1:]):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port (an IPv6 literal has two colons or more)
        text, colon, port = text.partition(":")
        if not _is_port_suffix(colon + port):
            return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_port_suffix(text: str) -> bool:
    return text == "" or (text[0] == ":" and text[1:].isdigit() and text[1:].isascii()
                          and len(text) <= 6)


def _values(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    """Every line of field `name`, in order: several lines form one list (RFC 9110 5.3)."""
    return [value for key, value in headers if key == name]


def _from_x_forwarded_for(lines: list[str], trust: ProxyTrust) -> str | None:
    entries = [entry.strip() for line in lines for entry in line.split(",")]
    if trust.everyone:
        return _address_text(entries[0])
    for hops, entry in enumerate(reversed(entries)):
        if hops >= MAX_HOPS:
            return None
        text = _address_text(entry)
        if text is None:
            return None  # garbage where the client should be: believe nothing of it
        if not trust.trusts(text):
            return text
    return _address_text(entries[0])


@functools.lru_cache(maxsize=TRUST_CACHE)
def _address_text(entry: str) -> str | None:
    """`entry` as a normalised address (`[2001:DB8::1]:80` -> `2001:db8::1`), or None."""
    address = parse_address(entry)
    return None if address is None else str(address)


def _scheme(text: str) -> str | None:
    value = text.strip().lower()
    return value if value in SCHEMES else None


# RFC 7239 section 4, over RFC 9110's token and quoted-string:
#   Forwarded         = 1#forwarded-element
#   forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
#   forwarded-pair    = token "=" value
#   value             = token / quoted-string
_TOKEN: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED_STRING: Final = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_FORWARDED_PAIR: Final = re.compile(
    rf"[ \t]*(?:({_TOKEN})=({_TOKEN}|{_QUOTED_STRING}))?[ \t]*([;,]|\Z)")
_QUOTED_PAIR: Final = re.compile(r"\\(.)")


def _forwarded_elements(text: str) -> list[dict[str, str]] | None:
    """The elements of a Forwarded header as {parameter: value}, or None if it is malformed."""
    elements: list[dict[str, str]] = []
    element: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        match = _FORWARDED_PAIR.match(text, pos)
        if match is None or match.end() == pos:
            return None
        name, value, separator = match.groups()
        if name is not None:
            name = name.lower()
            if name in element:  # RFC 7239 4: each parameter at most once per element
                return None
            if value.startswith('"'):
                value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
            element[name] = value
        if separator != ";":
            if element:
                elements.append(element)
            element = {}
        pos = match.end()
    return elements


def _from_forwarded(lines: list[str], trust: ProxyTrust) -> tuple[str | None, str | None]:
    elements = _forwarded_elements(", ".join(lines))
    if not elements:
        return None, None
    chosen: dict[str, str] | None = None
    if trust.everyone:
        chosen = elements[0]
    else:
        for hops, element in enumerate(reversed(elements)):
            if hops >= MAX_HOPS:
                return None, None
            text = _address_text(element.get("for", ""))
            if text is None:  # `unknown`, an obfuscated node, missing or garbage
                return None, None
            if not trust.trusts(text):
                chosen = element
                break
        else:
            chosen = elements[0]
    host = _address_text(chosen.get("for", ""))
    if host is None:
        return None, None
    proto = chosen.get("proto")
    return host, None if proto is None else _scheme(proto)
