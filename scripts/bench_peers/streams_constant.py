"""Peer: the streams ceiling. A bare `asyncio.start_server` streams server on uvloop that frames
requests just enough to answer each with the same constant response, like `raw_protocol.py`.

DESIGN.md puts `python -m app` on streams, not on a Protocol: this is the most any streams server
can do here, and the gap between it and the raw Protocol is the price of that choice (the
StreamReader copy and the task switch per read), paid before any HTTP or calculator work.
Run: `python scripts/bench_peers/streams_constant.py --port 0`.
"""

from __future__ import annotations

import asyncio

from common import BACKLOG, parse_args, serve_until_signalled
from raw_protocol import MAX_BUFFER, RESPONSE, take_requests


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    buffer = b""
    try:
        while data := await reader.read(65536):
            answers, buffer = take_requests(buffer + data if buffer else data)
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
    await serve_until_signalled(server)


def main() -> None:
    import uvloop

    host, port = parse_args(__doc__ or "")
    uvloop.run(serve(host, port))


if __name__ == "__main__":
    main()
