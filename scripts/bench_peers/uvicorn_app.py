"""Peer: the calculator as a minimal ASGI app under uvicorn (httptools, uvloop, no access log).

This is the server most people would pick; the app is as small as an ASGI app gets, so the
figures measure uvicorn's HTTP path. Run: `python scripts/bench_peers/uvicorn_app.py --port 0`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from types import FrameType
from typing import Any

import uvicorn
from calc_glue import HTML_TYPE, JSON_TYPE, calculate_form, page_renderer
from common import BACKLOG, IDLE_TIMEOUT, announce, parse_args

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

render_page = page_renderer()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":  # lifespan: nothing to set up
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    method, path = scope["method"], scope["path"]
    if path == "/calculate" and method == "POST":
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status, payload = calculate_form(body)
        content_type = JSON_TYPE
    elif path == "/" and method in ("GET", "HEAD"):
        status, payload, content_type = 200, render_page(), HTML_TYPE
    elif path == "/healthz":
        status, payload, content_type = 200, b"ok\n", "text/plain; charset=utf-8"
    else:
        status, payload, content_type = 404, b"not found\n", "text/plain; charset=utf-8"
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class Server(uvicorn.Server):
    """uvicorn's server, announcing the listening line once its sockets accept."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        loop_module = type(asyncio.get_running_loop()).__module__
        assert loop_module.startswith("uvloop"), f"uvicorn runs on {loop_module}, not uvloop"
        # uvicorn binds its own socket, as in production. (Passing one in through `sockets=` on the
        # stdlib loop leaves accepted connections without TCP_NODELAY: each response then waits
        # ~40 ms for a delayed ACK, which would measure a misconfiguration, not uvicorn.)
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        announce(host, port)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Shut down gracefully and exit 0, rather than re-raising the signal afterwards.
        self.should_exit = True


def make_config(host: str, port: int, **options: Any) -> uvicorn.Config:
    """The peer's configuration; `options` adds uvicorn settings (scripts/bench_tls.py: TLS)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=BACKLOG,
        timeout_keep_alive=int(IDLE_TIMEOUT),
        **options,
    )


def main() -> None:
    host, port = parse_args(__doc__ or "")
    # run(), not asyncio.run(serve()): run() installs the configured loop (uvloop).
    Server(make_config(host, port)).run()


if __name__ == "__main__":
    main()
