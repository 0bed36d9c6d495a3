"""Peer: the calculator as an aiohttp web application (uvloop, no access log).

Run: `python scripts/bench_peers/aiohttp_app.py --port 0`.
"""

from __future__ import annotations

import asyncio
from typing import cast

from aiohttp import web
from calc_glue import HTML_TYPE, JSON_TYPE, calculate_form, page_renderer
from common import BACKLOG, IDLE_TIMEOUT, announce, on_exit_signals, parse_args

render_page = page_renderer()


async def calculate(request: web.Request) -> web.Response:
    status, payload = calculate_form(await request.read())
    return web.Response(status=status, body=payload, headers={"Content-Type": JSON_TYPE})


async def index(request: web.Request) -> web.Response:
    return web.Response(body=render_page(), headers={"Content-Type": HTML_TYPE})


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def serve(host: str, port: int) -> None:
    app = web.Application()
    app.router.add_post("/calculate", calculate)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=IDLE_TIMEOUT)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=BACKLOG)
    await site.start()
    # aiohttp exposes the bound port only through the asyncio server.
    server = cast(asyncio.Server | None, site._server)
    assert server is not None and server.sockets
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    stop = asyncio.Event()
    on_exit_signals(stop.set)
    announce(bound_host, bound_port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    import uvloop

    host, port = parse_args(__doc__ or "")
    uvloop.run(serve(host, port))


if __name__ == "__main__":
    main()
