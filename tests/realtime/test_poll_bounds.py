"""Long-poll catch-up is bounded like WebSocket replay: a cursor far behind is answered in pages
(at most polling.MAX_MESSAGES per answer), nothing is skipped, and a poll may name at most
MAX_ROOMS channels."""

from __future__ import annotations

from typing import Any

import httpx

from pushwire.realtime import polling
from tests.live import LiveServer

PUSHED = polling.MAX_MESSAGES + 500


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _poll(http: httpx.AsyncClient, cursor: str | None, channel: str = "room.far") -> dict[str, Any]:
    params = [("channel", channel), ("timeout", "1")] + ([("cursor", cursor)] if cursor else [])
    r = await http.get("/api/v1/longpoll", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_a_far_back_cursor_is_answered_in_bounded_pages(live: LiveServer) -> None:
    token = live.token("far", ["room.*"])
    async with httpx.AsyncClient(base_url=live.http, timeout=40, headers=_auth(token)) as http:
        cursor = (await _poll(http, None))["cursor"]  # positioned at the top (0)
        async with live.pusher() as pw:
            for start in range(0, PUSHED, 100):
                batch = [{"channels": ["room.far"], "event": "e", "data": n} for n in range(start, start + 100)]
                await pw.push_batch(batch)
        sizes, data = [], []
        while len(data) < PUSHED:
            body = await _poll(http, cursor)
            assert body["messages"], "a poll behind the top must return messages"
            sizes.append(len(body["messages"]))
            data += [m["data"] for m in body["messages"]]
            assert [m["offset"] for m in body["messages"]] == list(range(len(data) - sizes[-1] + 1, len(data) + 1))
            cursor = body["cursor"]
    assert sizes[0] == polling.MAX_MESSAGES and max(sizes) <= polling.MAX_MESSAGES
    assert data == list(range(PUSHED))


async def test_a_poll_names_at_most_max_rooms_channels(live: LiveServer) -> None:
    token = live.token("rooms", ["room.*"])
    async with httpx.AsyncClient(base_url=live.http, timeout=40, headers=_auth(token)) as http:
        too_many = [("channel", f"room.{i}") for i in range(polling.MAX_ROOMS + 1)]
        r = await http.get("/api/v1/longpoll", params=[*too_many, ("timeout", "1")])
        assert r.status_code == 422 and r.json()["error"] == "invalid_request", r.text
        r = await http.get("/api/v1/longpoll", params=[*too_many[:-1], ("timeout", "1")])
        assert r.status_code == 200, r.text
