"""Peer: the ceiling. A bare `asyncio.Protocol` on uvloop that frames requests just enough to
answer each one with the same constant response, without parsing or computing anything.

No Python HTTP server on this machine can beat it; our asyncio mode is judged as a fraction of it.
Run: `python scripts/bench_peers/raw_protocol.py --port 0`.
"""

from __future__ import annotations

import asyncio
import re
from typing import cast

from common import BACKLOG, parse_args, serve_until_signalled

BODY = b'{"expr":"1+2","result":"3","exact":true,"fraction":null}\n'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
MAX_BUFFER = 1 << 20  # drop a client that sends a megabyte without a complete request


def take_requests(buffer: bytes) -> tuple[int, bytes]:
    """Frame just enough: (how many whole requests `buffer` holds, the bytes after them)."""
    answers = 0
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            break
        match = CONTENT_LENGTH.search(buffer, 0, end + 2)
        size = end + 4 + (int(match[1]) if match else 0)
        if len(buffer) < size:
            break
        buffer = buffer[size:]
        answers += 1
    return answers, buffer


class ConstantProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        answers, buffer = take_requests(self.buffer + data if self.buffer else data)
        self.buffer = buffer
        if answers:
            self.transport.write(RESPONSE * answers)
        if len(buffer) > MAX_BUFFER:
            self.transport.close()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(ConstantProtocol, host, port, backlog=BACKLOG)
    await serve_until_signalled(server)


def main() -> None:
    import uvloop

    host, port = parse_args(__doc__ or "")
    uvloop.run(serve(host, port))


if __name__ == "__main__":
    main()
