"""Long catch-ups: a replay bigger than the send buffer is delivered whole; past the cap it is an explicit loss."""

from __future__ import annotations

import msgspec
import pytest

from pushwire.messaging.publish import PublishRequest
from pushwire.realtime import recovery
from tests.live import Client, LiveServer

DATA = msgspec.Raw(b'"' + b"x" * 400 + b'"')  # ~0.6 KB frames: 4,000 of them are over 2 MiB


async def _fill(live: LiveServer, channel: str, n: int) -> None:
    for start in range(0, n, 100):
        reqs = [PublishRequest(channels=(channel,), event="e", data=DATA) for _ in range(min(100, n - start))]
        await live.runtime.publisher.publish_many(live.tenant_id, live.app_id, reqs)
    live.runtime.notify_published()


async def test_a_replay_over_the_send_buffer_arrives_whole(live: LiveServer) -> None:
    client = await Client.connect(live.ws_url(live.token("u1", ["room.*"])))
    try:
        welcome = await client.recv_until("welcome")
        await client.send({"type": "subscribe", "channel": "room.long"})
        first = await client.recv_until("subscribed")
        await _fill(live, "room.long", 4_000)
        await client.send(
            {"type": "subscribe", "channel": "room.long", "since": {"epoch": first["epoch"], "offset": 0}}
        )
        head = await client.recv_until("subscribed")
        assert (head["recovered"], head["replayed"]) == (True, 4_000)
        offsets = [m["offset"] for m in await client.messages(4_000, timeout=60)]
        assert offsets[:3] == [1, 2, 3] and offsets[-1] == 4_000 and len(set(offsets)) == 4_000
        assert welcome["type"] == "welcome"
    finally:
        await client.close()


async def test_more_than_the_replay_cap_behind_is_recovered_false(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recovery, "MAX_REPLAY", 50)
    await _fill(live, "room.far", 51)
    client = await Client.connect(live.ws_url(live.token("u2", ["room.*"])))
    try:
        await client.recv_until("welcome")
        await client.send({"type": "subscribe", "channel": "room.far"})
        first = await client.recv_until("subscribed")
        await client.send({"type": "subscribe", "channel": "room.far", "since": {"epoch": first["epoch"], "offset": 0}})
        head = await client.recv_until("subscribed")
        assert (head["recovered"], head["replayed"], head["offset"]) == (False, 0, 51)
        await client.send({"type": "subscribe", "channel": "room.far", "since": {"epoch": first["epoch"], "offset": 1}})
        head = await client.recv_until("subscribed")
        assert (head["recovered"], head["replayed"]) == (True, 50)
    finally:
        await client.close()
