"""Hold N idle keep-alive connections to a server, for the benchmark's idle scenario.

Opens the connections a batch at a time, sends one `GET /healthz` on each and reads the answer,
so every connection is a kept-alive HTTP/1.1 connection in the server's idle state. Then prints
`BENCH_JSON {"held": ..., "failed": ..., "errors": {...}, "seconds": ...}` and waits for commands
on stdin: `check` prints `BENCH_JSON {"still_open": ...}` (connections the server has not
closed), and `exit` (or end of input) closes everything.

The descriptor limit is raised to its hard limit (a root user raises the hard limit too).
Run: `python scripts/bench_peers/idle_client.py --port 8000 --count 1000`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
BATCH = 200  # connections opening at once: well under any server's listen backlog


def raise_nofile(wanted: int) -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def open_one(
    host: str, port: int, timeout: float, errors: Counter[str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        errors["connect timeout"] += 1
        return None
    except OSError as exc:
        errors[f"connect: {exc.strerror or exc}"] += 1
        return None
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await asyncio.wait_for(reader.readexactly(length), timeout)
        if status != 200:
            errors[f"status {status}"] += 1
            writer.close()
            return None
        if b"connection: close" in head.lower():
            errors["server closed after the request"] += 1
            writer.close()
            return None
    except TimeoutError:
        errors["response timeout"] += 1
        writer.close()
        return None
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        errors[f"read: {type(exc).__name__}"] += 1
        writer.close()
        return None
    return reader, writer


async def run(args: argparse.Namespace) -> None:
    limit = raise_nofile(args.count + 256)
    errors: Counter[str] = Counter()
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    started = time.monotonic()
    deadline = started + args.open_deadline
    remaining = args.count
    while remaining > 0 and time.monotonic() < deadline:
        batch = min(BATCH, remaining)
        results = await asyncio.gather(
            *(open_one(args.host, args.port, args.timeout, errors) for _ in range(batch))
        )
        held.extend(r for r in results if r is not None)
        remaining -= batch
    if remaining > 0:
        errors["not attempted (open deadline)"] += remaining
    summary = {
        "held": len(held),
        "failed": args.count - len(held),
        "errors": dict(errors),
        "seconds": round(time.monotonic() - started, 3),
        "nofile_limit": limit,
    }
    print("BENCH_JSON " + json.dumps(summary), flush=True)

    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        command = line.strip()
        if command == "check":
            await asyncio.sleep(0)  # let any pending EOFs land
            still_open = sum(
                1
                for reader, writer in held
                if not reader.at_eof() and not writer.transport.is_closing()
            )
            print("BENCH_JSON " + json.dumps({"still_open": still_open}), flush=True)
        elif command == "exit" or not line:
            break
    for _, writer in held:
        writer.close()


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """uvloop when installed (a faster client), else the standard loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=10.0, help="per connection step")
    parser.add_argument("--open-deadline", type=float, default=90.0, help="for opening them all")
    args = parser.parse_args()
    run_loop(run(args))


if __name__ == "__main__":
    main()
