"""The fairness scenario's bystander: another client, asking its own questions while the
attacker floods the server, and timing every answer.

From `--source` (127.0.0.2 by default: another client address, so another fair share), on a
fresh connection each (connect, request, answer, close):

- every `--cheap-interval` seconds (20 ms), `GET /calculate?expr=1%2B2`;
- every `--costly-interval` seconds (1 s), a costly `POST /calculate` (the expression in
  `--costly-file`, form-encoded).

Requests leave on schedule whether or not the earlier ones are answered (an open loop: a server
that stalls for a second gets the second's 50 requests at once, as real clients would send
them, instead of hiding the stall behind a waiting client). After `--duration` seconds it waits
up to `--timeout` for the answers in flight, then prints one `BENCH_JSON {...}` line: for each
kind the requests sent and answered 200, latency percentiles in ms over the 200s, and the
others by status or failure; for the cheap questions also the percentiles of those sent while
none of the costly ones was in flight (`alone_*`: a server may queue a client's cheap work
behind its own costly work, and this tells the two apart).

Run: `python scripts/bench_peers/fair_bystander.py --port 8000 --duration 5 --costly-file F`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from common import run

MAX_HEAD = 64 * 1024


class Kind:
    """One kind of question: what is sent, and what came back."""

    def __init__(self, name: str, request: bytes, interval: float) -> None:
        self.name = name
        self.request = request
        self.interval = interval
        self.sent = 0
        self.in_flight = 0
        self.latencies_ms: list[float] = []
        # The cheap answers to questions sent while none of the costly ones was in flight: a
        # server may queue a client's cheap work behind its own costly work.
        self.alone_ms: list[float] = []
        self.others: Counter[str] = Counter()  # non-200 statuses and failures

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        alone = sorted(self.alone_ms)
        in_flight = self.sent - len(ordered) - sum(self.others.values())
        if in_flight > 0:  # no answer by the end of the final wait
            self.others["unanswered"] += in_flight
        found: dict[str, Any] = {
            "sent": self.sent,
            "ok": len(ordered),
            "others": dict(self.others),
            "non_200": sum(self.others.values()),
        }
        if ordered:
            found["p50_ms"] = round(statistics.median(ordered), 3)
            found["p99_ms"] = round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3)
            found["max_ms"] = round(ordered[-1], 3)
        if alone:
            found["alone_ok"] = len(alone)
            found["alone_p50_ms"] = round(statistics.median(alone), 3)
            found["alone_p99_ms"] = round(alone[min(len(alone) - 1, int(len(alone) * 0.99))], 3)
        return found


async def ask(
    host: str, port: int, source: str, kind: Kind, timeout: float, beside: Kind | None
) -> None:
    """One question on a fresh connection; `beside`: the kind whose questions in flight at
    the start make this one not `alone`."""
    started = time.perf_counter()
    alone = beside is not None and beside.in_flight == 0
    kind.sent += 1
    kind.in_flight += 1
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, limit=MAX_HEAD, local_addr=(source, 0)
            )
            writer.write(kind.request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
    except TimeoutError:
        kind.others["timeout"] += 1
        return
    except asyncio.IncompleteReadError:
        kind.others["closed"] += 1
        return
    except OSError as exc:
        kind.others[exc.strerror or type(exc).__name__] += 1
        return
    finally:
        kind.in_flight -= 1
        if writer is not None:
            writer.close()
    status = int(head[9:12])
    if status == 200:
        elapsed = (time.perf_counter() - started) * 1000
        kind.latencies_ms.append(elapsed)
        if alone:
            kind.alone_ms.append(elapsed)
    else:
        kind.others[str(status)] += 1


async def schedule(
    kind: Kind,
    beside: Kind | None,
    args: argparse.Namespace,
    started: float,
    tasks: set[asyncio.Task[None]],
) -> None:
    """Launch one request of `kind` every `kind.interval` seconds until the duration is over."""
    count = 0
    while True:
        due = started + count * kind.interval
        if due >= started + args.duration:
            return
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(
            ask(args.host, args.port, args.source, kind, args.timeout, beside)
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        count += 1


async def main(args: argparse.Namespace) -> None:
    authority = f"{args.host}:{args.port}"
    cheap = Kind(
        "cheap",
        f"GET /calculate?expr=1%2B2 HTTP/1.1\r\nHost: {authority}\r\n"
        "Connection: close\r\n\r\n".encode(),
        args.cheap_interval,
    )
    body = b"expr=" + quote(Path(args.costly_file).read_text().strip(), safe="").encode()
    costly = Kind(
        "costly",
        (
            f"POST /calculate HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body,
        args.costly_interval,
    )
    tasks: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    await asyncio.gather(
        schedule(cheap, costly, args, started, tasks), schedule(costly, None, args, started, tasks)
    )
    if tasks:
        await asyncio.wait(set(tasks), timeout=args.timeout + 5)
    summary = {"seconds": round(time.monotonic() - started, 3), "cheap": cheap.summary(),
               "costly": costly.summary()}
    print("BENCH_JSON " + json.dumps(summary), flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", default="127.0.0.2", help="source address (the client)")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--cheap-interval", type=float, default=0.02)
    parser.add_argument("--costly-interval", type=float, default=1.0)
    parser.add_argument("--costly-file", required=True)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per answer")
    return parser.parse_args()


if __name__ == "__main__":
    run(main(parse_args()))
