"""The built-in load generator, for machines without wrk: N keep-alive connections, each sending
one request after the other for a fixed time, over a corpus of prepared request bodies.

It prints the same `BENCH_JSON {...}` summary line as `scripts/bench_post.lua` does under wrk
(latencies in microseconds). A Python client is far slower than wrk: on two cores it saturates
before the faster servers do, so its figures bound the servers from below. The benchmark says
which client produced each table.

Run: `python scripts/bench_peers/load_client.py --port 8000 --connections 64 --duration 5
      [--corpus FILE]` (with a corpus: POST /calculate form bodies, one per line; without: GET /).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
MAX_HEAD = 64 * 1024  # a response head bigger than this is not one of ours


def build_requests(host: str, port: int, corpus: Path | None) -> list[bytes]:
    authority = f"{host}:{port}".encode()
    if corpus is None:
        return [b"GET / HTTP/1.1\r\nHost: " + authority + b"\r\n\r\n"]
    bodies = [line.strip().encode() for line in corpus.read_text().splitlines() if line.strip()]
    return [
        b"POST /calculate HTTP/1.1\r\nHost: "
        + authority
        + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
        for body in bodies
    ]


class Stats:
    def __init__(self) -> None:
        self.latencies_us: list[float] = []
        self.bytes = 0
        self.errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}


async def one_connection(
    host: str,
    port: int,
    requests: list[bytes],
    offset: int,
    deadline: float,
    timeout: float,
    stats: Stats,
) -> None:
    """Send requests back to back on one connection (reconnecting after errors) until deadline."""
    index = offset
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=MAX_HEAD), timeout
            )
        except (TimeoutError, OSError):
            stats.errors["connect"] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            while time.monotonic() < deadline:
                request = requests[index % len(requests)]
                index += 1
                started = time.perf_counter()
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await asyncio.wait_for(reader.readexactly(length), timeout)
                stats.latencies_us.append((time.perf_counter() - started) * 1e6)
                stats.bytes += len(head) + len(body)
                status = int(head[9:12])
                if status >= 400:
                    stats.errors["status"] += 1
                if b"connection: close" in head.lower():
                    break
        except TimeoutError:
            stats.errors["timeout"] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            stats.errors["read"] += 1
        finally:
            writer.close()


def percentile(ordered: list[float], pct: float) -> float:
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[rank]


async def run(args: argparse.Namespace) -> dict[str, object]:
    requests = build_requests(args.host, args.port, args.corpus)
    stats = Stats()
    started = time.monotonic()
    deadline = started + args.duration
    await asyncio.gather(
        *(
            one_connection(args.host, args.port, requests, i * 7, deadline, args.timeout, stats)
            for i in range(args.connections)
        )
    )
    elapsed = time.monotonic() - started
    ordered = sorted(stats.latencies_us)
    count = len(ordered)
    return {
        "requests": count,
        "duration_us": round(elapsed * 1e6),
        "bytes": stats.bytes,
        "errors": stats.errors,
        "latency_us": {
            "min": ordered[0] if ordered else 0.0,
            "mean": sum(ordered) / count if count else 0.0,
            "max": ordered[-1] if ordered else 0.0,
            "p50": percentile(ordered, 50),
            "p90": percentile(ordered, 90),
            "p99": percentile(ordered, 99),
            "p99.9": percentile(ordered, 99.9),
        },
    }


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
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--corpus", type=Path, default=None)
    args = parser.parse_args()
    summary = run_loop(run(args))
    print("BENCH_JSON " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
