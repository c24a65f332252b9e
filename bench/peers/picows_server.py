"""The generator's ceiling: a bare picows server (Cython WebSocket framing) looping over its clients.

    python -m bench.peers.picows_server --port 9002

Clients connect on any path; a client on `/ctl` sends `"<n>|<payload>"` → the payload is sent to every client n times.
picows has no permessage-deflate, so there is no `--deflate`.
"""

from __future__ import annotations

import argparse

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

CLIENTS: set[WSTransport] = set()


class Receiver(WSListener):
    def on_ws_connected(self, transport: WSTransport) -> None:
        CLIENTS.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        CLIENTS.discard(transport)


class Control(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        n, _, payload = frame.get_payload_as_bytes().partition(b"|")
        text = WSMsgType.TEXT
        clients = list(CLIENTS)
        for _ in range(int(n)):
            for t in clients:
                t.send(text, payload)


def factory(request: WSUpgradeRequest) -> WSListener:
    return Control() if request.path.startswith(b"/ctl") else Receiver()


async def main(port: int) -> None:
    server = await ws_create_server(factory, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--deflate", action="store_true", help="refused: picows has no compression")
    a = p.parse_args()
    if a.deflate:
        raise SystemExit("picows_server: no permessage-deflate support")
    uvloop.run(main(a.port))
