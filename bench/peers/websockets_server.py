"""The limit of a pure-Python server: a bare `websockets` server using `broadcast()`.

    python -m bench.peers.websockets_server --port 9001 [--deflate]

Clients connect on any path; a client on `/ctl` sends `"<n>|<payload>"` → `broadcast(clients, payload)` n times.
"""

from __future__ import annotations

import argparse
import asyncio

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

CLIENTS: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    if ws.request is not None and ws.request.path.startswith("/ctl"):
        async for msg in ws:
            n, _, payload = str(msg).partition("|")
            for _ in range(int(n)):
                broadcast(CLIENTS, payload)
        return
    CLIENTS.add(ws)
    try:
        await ws.wait_closed()
    finally:
        CLIENTS.discard(ws)


async def main(port: int, deflate: bool) -> None:
    async with serve(
        handler,
        "127.0.0.1",
        port,
        compression="deflate" if deflate else None,
        ping_interval=None,
        max_size=2**16,
        backlog=4096,
    ):
        await asyncio.Future()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--deflate", action="store_true")
    a = p.parse_args()
    uvloop.run(main(a.port, a.deflate))
