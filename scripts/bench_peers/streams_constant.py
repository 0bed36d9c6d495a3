"""Peer: the streams ceiling. A bare `asyncio.start_server` streams server on uvloop that frames
requests just enough to answer each with the same constant response, like `raw_protocol.py`.

DESIGN.md puts `python -m app` on streams, not on a Protocol: this is the most any streams server
can do here, and the gap between it and the raw Protocol is the price of that choice (the
StreamReader copy and the task switch per read), paid before any HTTP or calculator work.
Run: `python scripts/bench_peers/streams_constant.py --port 0`.
"""

from __future__ import annotations

import asyncio

from common import BACKLOG, announce, on_exit_signals, parse_args
from raw_protocol import CONTENT_LENGTH, MAX_BUFFER, RESPONSE


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    buffer = b""
    try:
        while data := await reader.read(65536):
            buffer = buffer + data if buffer else data
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
            if answers:
                writer.write(RESPONSE * answers)
            if len(buffer) > MAX_BUFFER:
                break
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(host: str, port: int) -> None:
    server = await asyncio.start_server(answer, host, port, backlog=BACKLOG)
    stop = asyncio.Event()
    on_exit_signals(stop.set)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    announce(bound_host, bound_port)
    try:
        await stop.wait()
    finally:
        server.close()


def main() -> None:
    import uvloop

    host, port = parse_args(__doc__ or "")
    uvloop.run(serve(host, port))


if __name__ == "__main__":
    main()
