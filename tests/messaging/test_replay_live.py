"""End to end: a client connected over a real WebSocket receives a message replayed from the console."""

from __future__ import annotations

import httpx

from tests.console.conftest import PASSWORD, Browser
from tests.live import Client, LiveServer
from tests.services import unique

MESSAGE_KEYS = {"type", "channel", "offset", "epoch", "id", "event", "data", "ts"}


async def test_replay_from_the_console_reaches_a_connected_client_live(live: LiveServer) -> None:
    email = unique("admin-") + "@example.com"
    await live.runtime.accounts.create_user(email, PASSWORD, "tenant_admin", live.tenant_id)
    console = Browser(live.app)
    await console.http.aclose()
    console.http = httpx.AsyncClient(base_url=live.http)  # the real server, over TCP
    try:
        assert (await console.login(email)).status_code == 303
        async with await Client.connect(live.ws_url(live.token("u1", ["room.*"]))) as c, live.pusher() as pw:
            await c.recv_until("welcome")
            await c.send({"type": "subscribe", "channel": "room.live"})
            await c.recv_until("subscribed")
            await pw.push(channels=["room.live"], event="chat.message", data={"text": "hi", "n": [1, 2]})
            [original] = await c.messages(1)
            replay = f"/console/apps/{live.app_id}/replay"
            response = await console.post(replay, {"message_id": original["id"], "target_kind": "own"})
            assert response.status_code == 200, response.text
            [again] = await c.messages(1)
            assert set(again) == MESSAGE_KEYS and again["type"] == "message"
            assert (again["channel"], again["offset"], again["epoch"]) == ("room.live", 2, original["epoch"])
            assert again["id"] != original["id"] and again["id"] in response.text
            assert (again["event"], again["data"]) == (original["event"], original["data"])
            response = await console.post(replay, {"message_id": original["id"], "target_kind": "user", "target": "u1"})
            assert response.status_code == 200, response.text
            [personal] = await c.messages(1)
            assert set(personal) == MESSAGE_KEYS and (personal["channel"], personal["offset"]) == ("user.u1", 1)
            assert personal["data"] == original["data"] and personal["id"] not in (original["id"], again["id"])
    finally:
        await console.close()
