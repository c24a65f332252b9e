"""web/http_protocol.py: the addresses read without a socket object are the ones uvicorn reads."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from uvicorn.protocols.utils import get_local_addr, get_remote_addr

from pushwire.web.http_protocol import addresses


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_addresses_match_uvicorns(host: str) -> None:
    seen: list[tuple[object, object]] = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            ours = addresses(transport)
            theirs = (get_local_addr(transport), get_remote_addr(transport))  # type: ignore[arg-type]
            seen.append((ours, theirs))
            transport.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Probe, host, 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection(host, port)
        async with asyncio.timeout(5):
            while not seen:
                await asyncio.sleep(0.01)
        writer.close()
        server.close()

    uvloop.run(main())
    [(ours, theirs)] = seen
    assert ours == theirs
    assert ours[0] is not None and ours[1] is not None and ours[1][1] > 0
