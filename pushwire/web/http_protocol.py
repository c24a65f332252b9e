"""uvicorn's httptools protocol, minus a socket object per connection.

uvicorn reads the connection's addresses through `transport.get_extra_info("socket")`, which
uvloop answers by building a socket object for the connection (~20 µs, once per connection for
the HTTP protocol and again for the WebSocket one after an upgrade). The addresses uvloop already
has (`sockname`, `peername`) give the same tuples. Passed to uvicorn as `http=` by `pushwire
run`; realtime/transports/direct.py does the same for WebSockets.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import is_ssl


def addresses(transport: asyncio.BaseTransport) -> tuple[tuple[str, int | None] | None, tuple[str, int] | None]:
    """(server, client) as uvicorn puts them in the ASGI scope."""
    local: Any = transport.get_extra_info("sockname")
    peer: Any = transport.get_extra_info("peername")
    server: tuple[str, int | None] | None = None
    if isinstance(local, tuple | list) and len(local) >= 2:
        server = (str(local[0]), int(local[1]))
    elif isinstance(local, str):  # a Unix socket
        server = (local, None)
    client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple | list) and len(peer) >= 2 else None
    return server, client


class HttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.connections.add(self)
        self.transport = transport
        self.flow = FlowControl(transport)
        self.server, self.client = addresses(transport)
        self.scheme = "https" if is_ssl(transport) else "http"

    def handle_websocket_upgrade(self) -> None:
        """uvicorn's; then the httptools parser (whose callbacks are this protocol's bound methods)
        is dropped. uvicorn breaks that cycle in `connection_lost`, which never runs here once the
        connection is upgraded: the cycle, with the request's URL (a client token) and headers,
        would wait for a full GC collection."""
        super().handle_websocket_upgrade()
        self.parser = None  # type: ignore[assignment]
