"""Heartbeats, silent clients and graceful shutdown."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import websockets

from pushwire.storage.migrate import upgrade
from tests.live import live_server


@pytest.fixture
async def sqlite_env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path}/live.db"
    await asyncio.to_thread(upgrade, url)
    return {
        "PUSHWIRE_DATABASE_URL": url,
        "PUSHWIRE_SECRET_KEY": "test-secret-key-0123456789",
        "PUSHWIRE_HEARTBEAT": "1",
    }


async def test_server_pings_and_silent_client_is_closed(sqlite_env: dict[str, str]) -> None:
    async with live_server(sqlite_env) as live, live.pusher() as pw:
        talker = await websockets.connect(live.ws_url(live.token("talker")))
        silent = await websockets.connect(live.ws_url(live.token("silent")))
        assert json.loads(await talker.recv())["type"] == "welcome"
        saw_ping = False
        async with asyncio.timeout(6):
            while not saw_ping:
                frame = json.loads(await talker.recv())
                if frame["type"] == "ping":
                    saw_ping = True
                    await talker.send(json.dumps({"type": "pong"}))
        # the silent client never sends: closed with 4003 after 2 x heartbeat, its route removed
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(8):
                while True:
                    await silent.recv()
        assert silent.close_code == 4003
        for _ in range(40):
            if not (await pw.presence("silent"))["online"]:
                break
            await asyncio.sleep(0.05)
        assert (await pw.presence("silent"))["online"] is False
        await talker.send(json.dumps({"type": "ping"}))
        await talker.close()


async def test_shutdown_closes_clients_with_4500(sqlite_env: dict[str, str]) -> None:
    sqlite_env["PUSHWIRE_HEARTBEAT"] = "25"
    async with live_server(sqlite_env) as live:
        ws = await websockets.connect(live.ws_url(live.token("u")))
        await ws.recv()
        stop = asyncio.create_task(live.runtime.stop())
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
        assert ws.close_code == 4500
        await stop
