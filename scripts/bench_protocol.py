"""Benchmark app.protocol against h11: parse + serialise one typical browser request.

Each round feeds the same ~10-header browser request to a fresh connection object, pulls the
request out, and serialises a small HTML response, for app.protocol and for h11 on the same
input in the same run. Rounds alternate between the two so machine noise hits both alike; the
report gives medians of several rounds and the ratio.

Usage: python scripts/bench_protocol.py [--rounds 7] [--seconds 0.5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from importlib.metadata import version

import h11

from app.protocol import NEED_DATA, Connection, Request, Response

REQUEST = (
    b"GET /calculate?expr=1%2B2 HTTP/1.1\r\n"
    b"Host: localhost:8080\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-GB,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Connection: keep-alive\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-Site: none\r\n"
    b"\r\n"
)
BODY = b"<!doctype html><title>calc</title><p>3</p>\n"
HEADERS = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-cache")]
DATE = b"Sun, 06 Nov 1994 08:49:37 GMT"


def calcserve_once() -> bytes:
    conn = Connection()
    conn.receive_data(REQUEST)
    event = conn.next_event()
    assert isinstance(event, Request)
    out = conn.send(event, Response(200, list(HEADERS), BODY), date=DATE)
    assert conn.next_event() is NEED_DATA
    return out


def h11_once() -> bytes:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(REQUEST)
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    assert isinstance(conn.next_event(), h11.EndOfMessage)
    headers = [*HEADERS, ("Content-Length", str(len(BODY))), ("Date", DATE.decode())]
    out = conn.send(h11.Response(status_code=200, headers=headers))
    assert out is not None
    body = conn.send(h11.Data(data=BODY))
    end = conn.send(h11.EndOfMessage())
    assert body is not None and end is not None
    return out + body + end


def rate(fn: Callable[[], bytes], seconds: float) -> float:
    """Calls per second of fn over about `seconds`."""
    n = 0
    batch = 200
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.5, help="per round and parser")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    calcserve_once()
    h11_once()  # warm both, and prove both paths work before timing them
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(args.rounds):
        ours.append(rate(calcserve_once, args.seconds))
        theirs.append(rate(h11_once, args.seconds))
    ours_median = statistics.median(ours)
    h11_median = statistics.median(theirs)
    ratio = ours_median / h11_median
    result = {
        "request_bytes": len(REQUEST),
        "rounds": args.rounds,
        "calcserve_req_per_s": round(ours_median),
        "h11_req_per_s": round(h11_median),
        "ratio": round(ratio, 2),
        "goal_met": ours_median >= 100_000 and ratio >= 3.0,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"request: {len(REQUEST)} bytes, 10 header fields; {args.rounds} rounds, medians")
        print(f"calcserve protocol: {ours_median:12,.0f} req/s  (parse + serialise)")
        print(f"h11 {version('h11'):>8}:      {h11_median:12,.0f} req/s")
        print(
            f"ratio:              {ratio:12.2f}x  (goal: >= 3x and >= 100,000 req/s: "
            f"{'met' if result['goal_met'] else 'NOT met'})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
