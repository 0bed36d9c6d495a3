"""What every peer shares: the listening line, its arguments, the exit signals, the event loop."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as `python scripts/bench_peers/NAME.py`
    sys.path.insert(0, str(ROOT))

BACKLOG = 2048  # same order as uvicorn's default; the 512-connection scenario connects at once
IDLE_TIMEOUT = 600.0  # seconds; longer than any scenario, so idle connections are held, not reaped


def announce(host: str, port: int) -> None:
    """Print the one listening line the benchmark (and DESIGN.md) waits for."""
    if ":" in host:
        host = f"[{host}]"
    print(f"listening on http://{host}:{port}", flush=True)


def on_exit_signals(callback: Callable[[], None]) -> None:
    """Call `callback` on SIGINT/SIGTERM through the running event loop (exit status 0)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, callback)


async def serve_until_signalled(server: asyncio.Server) -> None:
    """Announce `server`'s bound address, serve until SIGINT/SIGTERM, then close it."""
    stop = asyncio.Event()
    on_exit_signals(stop.set)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    announce(bound_host, bound_port)
    try:
        await stop.wait()
    finally:
        server.close()


def parse_args(description: str) -> tuple[str, int]:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    return str(args.host), int(args.port)


T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on uvloop when it is installed (a faster client), else the standard loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
