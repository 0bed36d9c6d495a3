"""Benchmark app.protocol against h11: parse + serialise one typical browser request.

Each round feeds the same ~10-header browser request to a fresh connection object, pulls the
request out, and serialises a small HTML response (also with a new target every time, so the
parsed-head cache never hits), for app.protocol and for h11 on the same
input in the same run. Rounds alternate between the two so machine noise hits both alike; the
report gives medians of several rounds and the ratio.

Usage: python scripts/bench_protocol.py [--rounds 7] [--seconds 0.5] [--json]

`--server-path` instead replays, per request, exactly the calls app/server.py makes on a kept-alive
connection (`receive_data`, `next_event` until NEED_DATA, `Routes.handle`, `send` with a cached
Date) for a wrk-like form POST (varied expressions, as scripts/bench.py's corpus), for the
10-header browser GET of /calculate?expr=1%2B2, and for that browser's GET / (the page). It
reports CPU microseconds per request (`time.process_time` medians) for the protocol alone (a
fixed response), the calculator alone, and the whole path; `--callgrind` adds instruction counts
per request from valgrind (deterministic, whatever the machine's load):

    python scripts/bench_protocol.py --server-path [--callgrind]

`--trickle` feeds heads of 1, 4 and 15 KiB (one long field, then the empty line) one byte per
read, as a slowloris client sends them, and reports the CPU cost per byte: the core checks each
line as it completes and resumes where it stopped, so the cost per byte must not grow with the
size of the head (a parser that rescanned the buffer on every read would be quadratic).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from importlib.metadata import version

import h11

from app.protocol import NEED_DATA, Connection, Request, Response, http_date

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


_unique = iter(range(1 << 62))


def calcserve_unique_once() -> bytes:
    """As calcserve_once, but every head is new (a different target): no parsed-head cache hit."""
    conn = Connection()
    conn.receive_data(REQUEST.replace(b"expr=1%2B2", b"expr=%d" % next(_unique), 1))
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


# --- the server's path ------------------------------------------------------------------------

# What wrk sends with scripts/bench_post.lua: Host, Content-Type, Content-Length, a form body.
_EXPRESSIONS = ("1+2", "2*3+4", "0.1+0.2", "1/3+1/6", "2^100", "(1+2)*(3+4)*(5+6)", "-7+3*-2",
                "3.14159*2", "sqrt(2)", "2*pi*6371", "sin(pi/6)", "10!", "100/7*7", "22/7-3")
POST_BODIES = [urlencode({"expr": f"{e}+{n}"}).encode() for n in range(1, 5)
               for e in _EXPRESSIONS]
POST_HEADS = [
    b"POST /calculate HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: %d\r\n\r\n" % len(body)
    for body in POST_BODIES
]
POST_REQUESTS = [head + body for head, body in zip(POST_HEADS, POST_BODIES, strict=True)]
POST_EXPRS = [f"{e}+{n}" for n in range(1, 5) for e in _EXPRESSIONS]
JSON_BODY = b'{"expr":"1+2","result":"3","exact":true,"fraction":null}\n'
JSON_HEADERS = [("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff"),
                ("Cache-Control", "no-store"), ("Vary", "Accept")]
SERVER_DATE = http_date(784111777.0)


def _server_step(conn: Connection, data: bytes, handle: Callable[[Request], Response]) -> int:
    """One read's worth of app/server.py `_respond`, minus metrics and logging; bytes out."""
    conn.receive_data(data)
    size = 0
    while True:
        event = conn.next_event()
        if type(event) is Request:
            if event.path == "/metrics":
                raise AssertionError("not benchmarked")
            response = handle(event)
            answer = conn.send(event, response, date=SERVER_DATE)
            size += len(answer) + response.status + len(response.body) + len(event.method)
        elif event is NEED_DATA:
            return size
        else:
            raise AssertionError(f"unexpected {event!r}")


def _fixed_json(request: Request) -> Response:
    return Response(200, list(JSON_HEADERS), JSON_BODY)


def make_cases() -> dict[str, Callable[[int], None]]:
    """name -> run(n): n requests of that case on one kept-alive connection."""
    from app.calculator import evaluate
    from app.routes import Routes, load_assets

    handle = Routes(load_assets()).handle
    posts = POST_REQUESTS
    count = len(posts)

    def post_protocol(n: int) -> None:
        conn = Connection()
        for i in range(n):
            _server_step(conn, posts[i % count], _fixed_json)

    def post_route(n: int) -> None:
        conn = Connection()
        for i in range(n):
            _server_step(conn, posts[i % count], handle)

    def post_calculator(n: int) -> None:
        exprs = POST_EXPRS
        for i in range(n):
            evaluate(exprs[i % count])

    def get_protocol(n: int) -> None:
        conn = Connection()
        for _ in range(n):
            _server_step(conn, REQUEST, _fixed_json)

    def get_calculator(n: int) -> None:
        for _ in range(n):
            evaluate("1+2")  # the browser GET's ?expr=1%2B2

    def get_route(n: int) -> None:
        conn = Connection()
        for _ in range(n):
            _server_step(conn, REQUEST, handle)

    page = REQUEST.replace(b"GET /calculate?expr=1%2B2 ", b"GET / ", 1)

    def page_route(n: int) -> None:
        conn = Connection()
        for _ in range(n):
            _server_step(conn, page, handle)

    return {"post_protocol": post_protocol, "post_route": post_route,
            "post_calculator": post_calculator, "get_protocol": get_protocol,
            "get_calculator": get_calculator, "get_route": get_route, "page_route": page_route}


def cpu_us_per_request(run: Callable[[int], None], n: int, rounds: int) -> float:
    run(n // 10 + 1)  # warm caches and the specialising interpreter
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        run(n)
        samples.append((time.process_time() - start) / n * 1e6)
    return statistics.median(samples)


def callgrind_instructions(case: str, n: int) -> float:
    """Instructions per request: valgrind runs of n and 0 requests, differenced."""
    totals = []
    for loops in (0, n):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "cg.out")
            subprocess.run(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                 sys.executable, __file__, "--replay", case, str(loops)],
                check=True, capture_output=True,
            )
            with open(out) as f:
                totals.append(int(re.findall(r"^summary: (\d+)", f.read(), re.M)[-1]))
    return (totals[1] - totals[0]) / n


TRICKLE_SIZES = (1024, 4096, 15 * 1024)  # the last just under app.protocol.MAX_HEAD_SIZE


def trickled_head(size: int) -> bytes:
    start = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Long: "
    return start + b"v" * (size - len(start) - 4) + b"\r\n\r\n"


def feed_bytewise(head: bytes) -> None:
    conn = Connection()
    for i in range(len(head) - 1):
        conn.receive_data(head[i : i + 1])
        assert conn.next_event() is NEED_DATA
    conn.receive_data(head[-1:])
    assert isinstance(conn.next_event(), Request)


def trickle(args: argparse.Namespace) -> int:
    result: dict[str, float] = {}
    for size in TRICKLE_SIZES:
        head = trickled_head(size)
        times = []
        for _ in range(args.rounds):
            start = time.process_time()
            feed_bytewise(head)
            times.append(time.process_time() - start)
        result[f"ns_per_byte_{size}"] = round(statistics.median(times) / len(head) * 1e9, 1)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"a head fed one byte per read; {args.rounds} rounds, medians of CPU time")
    for size in TRICKLE_SIZES:
        print(f"{size:6} bytes: {result[f'ns_per_byte_{size}']:8.1f} ns per byte")
    return 0


def server_path(args: argparse.Namespace) -> int:
    cases = make_cases()
    result: dict[str, dict[str, float]] = {}
    for name, run in cases.items():
        entry = {"cpu_us": round(cpu_us_per_request(run, args.requests, args.rounds), 2)}
        if args.callgrind:
            entry["instructions"] = round(callgrind_instructions(name, args.callgrind))
        result[name] = entry
    for kind in ("post", "get"):
        route, proto = result[f"{kind}_route"], result[f"{kind}_protocol"]
        calc = result.get(f"{kind}_calculator", {"cpu_us": 0.0, "instructions": 0})
        extra: dict[str, float] = {
            "cpu_us": round(route["cpu_us"] - proto["cpu_us"] - calc["cpu_us"], 2)}
        if "instructions" in route:
            extra["instructions"] = (route["instructions"] - proto["instructions"]
                                     - calc.get("instructions", 0))
        result[f"{kind}_routes_only"] = extra
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"per request, kept-alive connection; {args.rounds} rounds x {args.requests} requests,"
          " medians of CPU time" + (f"; callgrind over {args.callgrind}" if args.callgrind else ""))
    for name, entry in result.items():
        line = f"{name:18} {entry['cpu_us']:8.2f} us"
        if "instructions" in entry:
            line += f"  {entry['instructions']:10,.0f} instructions"
        print(line)
    print("(routes_only = route - protocol - calculator: the cost of app/routes.py itself)")
    return 0


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--replay":  # a callgrind child
        make_cases()[sys.argv[2]](int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.5, help="per round and parser")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--server-path", action="store_true",
                        help="replay app/server.py's per-request calls (see the docstring)")
    parser.add_argument("--requests", type=int, default=5000, help="per round (--server-path)")
    parser.add_argument("--callgrind", type=int, nargs="?", const=2000, default=0,
                        metavar="N", help="with --server-path: instructions over N requests")
    parser.add_argument("--trickle", action="store_true",
                        help="cost per byte of heads fed one byte per read (see the docstring)")
    args = parser.parse_args()
    if args.server_path:
        return server_path(args)
    if args.trickle:
        return trickle(args)

    calcserve_once()
    h11_once()  # warm both, and prove both paths work before timing them
    ours: list[float] = []
    unique: list[float] = []
    theirs: list[float] = []
    for _ in range(args.rounds):
        ours.append(rate(calcserve_once, args.seconds))
        unique.append(rate(calcserve_unique_once, args.seconds))
        theirs.append(rate(h11_once, args.seconds))
    ours_median = statistics.median(ours)
    unique_median = statistics.median(unique)
    h11_median = statistics.median(theirs)
    ratio = ours_median / h11_median
    result = {
        "request_bytes": len(REQUEST),
        "rounds": args.rounds,
        "calcserve_req_per_s": round(ours_median),
        "calcserve_unique_heads_req_per_s": round(unique_median),
        "h11_req_per_s": round(h11_median),
        "ratio": round(ratio, 2),
        "goal_met": ours_median >= 100_000 and ratio >= 3.0,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"request: {len(REQUEST)} bytes, 10 header fields; {args.rounds} rounds, medians")
        print(f"calcserve protocol: {ours_median:12,.0f} req/s  (parse + serialise)")
        print(f"  every head new:   {unique_median:12,.0f} req/s  (no parsed-head cache hit)")
        print(f"h11 {version('h11'):>8}:      {h11_median:12,.0f} req/s")
        print(
            f"ratio:              {ratio:12.2f}x  (goal: >= 3x and >= 100,000 req/s: "
            f"{'met' if result['goal_met'] else 'NOT met'})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
