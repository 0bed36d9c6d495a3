"""The fairness scenario's attacker: N keep-alive connections, each POSTing one costly expression
back to back, as fast as the server answers.

It is an attacker, so it honours no Retry-After: a 429 or a 503 is counted, and the connection
asks again at once. What it must see is an answer to every request; a request that gets none
(the connection reset or closed before the response, or no response within `--timeout`) is
counted as unanswered, by reason, and the connection is opened again.

Protocol with the benchmark (scripts/benchkit/fairness.py): once every connection is open (or
`--open-deadline` has passed) it prints `BENCH_JSON {"event": "ready", ...}`; then on stdin,
`mark` prints `BENCH_JSON {"event": "mark", ...}` with the counts so far and the monotonic
time, and `exit` (or end of input) stops sending, waits up to `--timeout` for the answers in
flight and prints `BENCH_JSON {"event": "done", ...}` with the totals. Nothing else goes to
stdout.

Run: `python scripts/bench_peers/fair_attacker.py --port 8000 --connections 64
      --expr-file FILE` (the file holds the expression, as text).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from common import run

BATCH = 128  # connections opening at once: well under every server's listen backlog
MAX_HEAD = 64 * 1024  # a response head bigger than this is not one of ours
FORM = "application/x-www-form-urlencoded"


class Counts:
    """What the attacker saw; `snapshot()` is what it reports."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.unanswered: Counter[str] = Counter()
        self.connect_errors: Counter[str] = Counter()
        self.missing_retry_after = 0
        self.sent = 0
        self.closed_by_server = 0  # after an answer, with `Connection: close`: allowed

    def snapshot(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "unanswered": dict(self.unanswered),
            "connect_errors": dict(self.connect_errors),
            "missing_retry_after": self.missing_retry_after,
            "closed_by_server": self.closed_by_server,
            "t": time.monotonic(),
        }


def build_request(host: str, port: int, expr: str, body_type: str) -> bytes:
    """The POST: form-encoded as the page's form sends it (every `(`, `)` and `+` escaped), or
    the bare expression as text/plain, which the server need not unescape."""
    if body_type == "form":
        body, media = b"expr=" + quote(expr, safe="").encode(), FORM
    else:
        body, media = expr.encode(), "text/plain"
    return (
        f"POST /calculate HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {media}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    """One response: its status and headers (lower-case names); the body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    headers: dict[bytes, bytes] = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return status, headers


class Attacker:
    def __init__(self, args: argparse.Namespace, expr: str) -> None:
        self.host: str = args.host
        self.port: int = args.port
        self.source: str = args.source
        self.timeout: float = args.timeout
        self.request = build_request(self.host, self.port, expr, args.body)
        self.counts = Counts()
        self.stopping = asyncio.Event()
        self.opened = 0

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(
                    self.host, self.port, limit=MAX_HEAD, local_addr=(self.source, 0)
                ),
                self.timeout,
            )
        except TimeoutError:
            self.counts.connect_errors["timeout"] += 1
        except OSError as exc:
            self.counts.connect_errors[exc.strerror or type(exc).__name__] += 1
        return None

    async def connection(self, gate: asyncio.Semaphore) -> None:
        """One keep-alive connection's loop, reconnecting after a close, until told to stop."""
        async with gate:
            pair = await self.connect()
        if pair is not None:
            self.opened += 1
        while not self.stopping.is_set():
            if pair is None:
                await asyncio.sleep(0.05)
                pair = await self.connect()
                continue
            reader, writer = pair
            if not await self.one_request(reader, writer):
                writer.close()
                pair = None
        if pair is not None:
            pair[1].close()

    async def one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Send the request and count its answer; False when the connection is done."""
        counts = self.counts
        try:
            writer.write(self.request)
            counts.sent += 1
            status, headers = await asyncio.wait_for(read_answer(reader), self.timeout)
        except TimeoutError:
            counts.unanswered["timeout"] += 1
            return False
        except asyncio.IncompleteReadError:
            counts.unanswered["closed"] += 1
            return False
        except (ConnectionError, OSError):
            counts.unanswered["reset"] += 1
            return False
        counts.statuses[status] += 1
        if status in (429, 503) and not headers.get(b"retry-after", b"").isdigit():
            counts.missing_retry_after += 1
        if headers.get(b"connection", b"").lower() == b"close":
            counts.closed_by_server += 1
            return False
        return True


def report(event: str, **fields: Any) -> None:
    sys.stdout.write("BENCH_JSON " + json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


async def commands(attacker: Attacker) -> None:
    """`mark` reports the counts so far; `exit` or end of input stops the attack."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes] = asyncio.Queue()
    fd = sys.stdin.fileno()
    buffer = b""

    def readable() -> None:
        nonlocal buffer
        data = os.read(fd, 4096)
        if not data:
            loop.remove_reader(fd)
            lines.put_nowait(b"exit")
            return
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            lines.put_nowait(line.strip())

    loop.add_reader(fd, readable)
    while True:
        line = await lines.get()
        if line == b"mark":
            report("mark", **attacker.counts.snapshot())
        elif line == b"exit":
            loop.remove_reader(fd)
            attacker.stopping.set()
            return


async def main(args: argparse.Namespace) -> None:
    attacker = Attacker(args, Path(args.expr_file).read_text().strip())
    gate = asyncio.Semaphore(BATCH)
    tasks = [asyncio.create_task(attacker.connection(gate)) for _ in range(args.connections)]
    control = asyncio.create_task(commands(attacker))
    deadline = time.monotonic() + args.open_deadline
    while attacker.opened + sum(attacker.counts.connect_errors.values()) < args.connections:
        if time.monotonic() > deadline or control.done():
            break
        await asyncio.sleep(0.02)
    report("ready", open=attacker.opened, **attacker.counts.snapshot())
    await control
    # Stopping: each connection finishes the request it has in flight (bounded by --timeout).
    _done, pending = await asyncio.wait(tasks, timeout=args.timeout + 5)
    for task in pending:  # cannot happen with the per-request timeout; counted if it does
        task.cancel()
        attacker.counts.unanswered["stuck"] += 1
    report("done", open=attacker.opened, **attacker.counts.snapshot())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", default="127.0.0.1", help="source address (the client)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--expr-file", required=True)
    parser.add_argument("--body", choices=("form", "text"), default="form")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per answer")
    parser.add_argument("--open-deadline", type=float, default=30.0)
    return parser.parse_args()


if __name__ == "__main__":
    run(main(parse_args()))
