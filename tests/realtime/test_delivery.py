"""End-to-end delivery over WebSocket on both backend sets: live, unread compensation, recovery, read sync."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from pushwire.messaging.hot_history import hot_key
from pushwire.storage.models import Message
from tests.live import Client, LiveServer


async def test_welcome_then_live_personal_and_broadcast(live: LiveServer) -> None:
    async with await Client.connect(live.ws_url(live.token("u1"))) as c, live.pusher() as pw:
        welcome = await c.recv()
        assert welcome["type"] == "welcome" and welcome["user"] == "u1" and welcome["app"] == live.app_id
        assert set(welcome["channels"]) == {"user.u1", "broadcast"}
        await pw.push(users=["u1"], event="greet", data={"n": 1})
        await pw.push(broadcast=True, event="news", data="all")
        got = await c.messages(2)
        assert [(m["channel"], m["offset"], m["event"]) for m in got] == [
            ("user.u1", 1, "greet"),
            ("broadcast", 1, "news"),
        ]
        assert got[0]["data"] == {"n": 1} and got[0]["epoch"] == welcome["channels"]["user.u1"]["epoch"]


async def test_unread_compensation_after_ack(live: LiveServer) -> None:
    token = live.token("u2")
    async with live.pusher() as pw:
        c = await Client.connect(live.ws_url(token))
        await c.recv_until("welcome")
        await pw.push(users=["u2"], event="e", data=0)
        [first] = await c.messages(1)
        await c.send({"type": "ack", "channel": "user.u2", "offset": first["offset"]})
        await asyncio.sleep(0.3)
        await c.close()
        for i in range(1, 101):
            await pw.push(users=["u2"], event="e", data=i)
        c = await Client.connect(live.ws_url(token))
        await c.recv_until("welcome")
        unread = await c.messages(100)
        assert [m["offset"] for m in unread] == list(range(2, 102))
        assert [m["data"] for m in unread] == list(range(1, 101))
        await pw.push(users=["u2"], event="e", data="live")
        [nxt] = await c.messages(1)
        assert (nxt["offset"], nxt["data"]) == (102, "live")
        await c.close()


async def _room_gap(live: LiveServer, flush_cache: bool) -> None:
    token = live.token("u3", ["room.*"])
    async with live.pusher() as pw:
        c = await Client.connect(live.ws_url(token))
        await c.recv_until("welcome")
        await c.send({"type": "subscribe", "channel": "room.a"})
        sub = await c.recv_until("subscribed")
        assert sub["recovered"] is False and sub["offset"] == 0
        await pw.push(channels=["room.a"], event="e", data=0)
        [m1] = await c.messages(1)
        await c.close()
        await pw.push_batch([{"channels": ["room.a"], "event": "e", "data": i} for i in range(1, 51)])
        await pw.push_batch([{"channels": ["room.a"], "event": "e", "data": i} for i in range(51, 101)])
        cache = live.runtime.backends.cache
        async with asyncio.timeout(10):  # the relay has filled the hot history
            while await cache.list_length(hot_key(live.app_id, "room.a")) < 101:
                await asyncio.sleep(0.02)
        if flush_cache:
            await cache.delete(hot_key(live.app_id, "room.a"))
        sources = dict(live.runtime.connections.recovery.sources)
        c = await Client.connect(live.ws_url(token))
        await c.recv_until("welcome")
        await c.send({"type": "subscribe", "channel": "room.a", "since": {"epoch": m1["epoch"], "offset": 1}})
        sub = await c.recv_until("subscribed")
        assert (sub["recovered"], sub["replayed"], sub["offset"]) == (True, 100, 101)
        replay = await c.messages(100)
        assert [m["offset"] for m in replay] == list(range(2, 102))
        # The replay came from where the test says: the hot history, or the database once flushed.
        used = {k: n - sources.get(k, 0) for k, n in live.runtime.connections.recovery.sources.items()}
        expected = "database" if flush_cache else "cache"
        assert used.get(expected, 0) >= 1 and used.get("cache" if flush_cache else "database", 0) == 0, used
        await pw.push(channels=["room.a"], event="e", data="live")
        [live_msg] = await c.messages(1)
        assert live_msg["offset"] == 102
        await c.close()


async def test_recovery_from_hot_history(live: LiveServer) -> None:
    await _room_gap(live, flush_cache=False)


async def test_recovery_from_database_when_cache_flushed(live: LiveServer) -> None:
    await _room_gap(live, flush_cache=True)


async def test_gap_that_cannot_be_filled_is_explicit(live: LiveServer) -> None:
    token = live.token("u4", ["room.*"])
    async with live.pusher() as pw:
        out = await pw.push_batch([{"channels": ["room.t"], "event": "e", "data": i} for i in range(20)])
        epoch = out["results"][0]["deliveries"][0]["epoch"]
        await asyncio.sleep(0.3)
        # Retention removed offsets 1..10 and the cache no longer has them.
        async with live.runtime.backends.database.session() as s:
            await s.execute(
                sa.delete(Message).where(
                    Message.app_id == live.app_id, Message.channel == "room.t", Message.offset <= 10
                )
            )
            await s.commit()
        await live.runtime.backends.cache.delete(hot_key(live.app_id, "room.t"))
        async with await Client.connect(live.ws_url(token)) as c:
            await c.recv_until("welcome")
            await c.send({"type": "subscribe", "channel": "room.t", "since": {"epoch": epoch, "offset": 5}})
            sub = await c.recv_until("subscribed")
            assert (sub["recovered"], sub["replayed"], sub["offset"]) == (False, 0, 20)
            # a wrong epoch is never "recovered" either
            await c.send({"type": "subscribe", "channel": "room.t", "since": {"epoch": "other", "offset": 15}})
            sub = await c.recv_until("subscribed")
            assert sub["recovered"] is False
            # still complete from 10 on
            await c.send({"type": "subscribe", "channel": "room.t", "since": {"epoch": epoch, "offset": 15}})
            sub = await c.recv_until("subscribed")
            assert (sub["recovered"], sub["replayed"]) == (True, 5)


async def test_ack_on_one_device_is_read_on_the_other(live: LiveServer) -> None:
    token = live.token("u5")
    async with live.pusher() as pw:
        a = await Client.connect(live.ws_url(token))
        b = await Client.connect(live.ws_url(token))
        await a.recv_until("welcome")
        await b.recv_until("welcome")
        await pw.push(users=["u5"], event="e", data=1)
        [m] = await a.messages(1)
        await b.messages(1)
        await a.send({"type": "ack", "channel": "user.u5", "offset": m["offset"]})
        read = await b.recv_until("read")
        assert read == {"type": "read", "channel": "user.u5", "offset": m["offset"]}
        await a.close()
        await b.close()


async def test_ping_pong_and_unsubscribe(live: LiveServer) -> None:
    async with await Client.connect(live.ws_url(live.token("u6", ["room.x"]))) as c, live.pusher() as pw:
        await c.recv_until("welcome")
        await c.send({"type": "ping"})
        assert (await c.recv_until("pong"))["type"] == "pong"
        await c.send({"type": "subscribe", "channel": "room.x"})
        await c.recv_until("subscribed")
        await c.send({"type": "unsubscribe", "channel": "room.x"})
        assert await c.recv_until("unsubscribed") == {"type": "unsubscribed", "channel": "room.x"}
        await pw.push(channels=["room.x"], event="e", data=1)
        await pw.push(users=["u6"], event="marker", data=2)
        [m] = await c.messages(1)
        assert m["event"] == "marker"  # the room's message did not arrive


async def test_presence_reflects_connections(live: LiveServer) -> None:
    async with live.pusher() as pw:
        c = await Client.connect(live.ws_url(live.token("u7")))
        await c.recv_until("welcome")
        p = await pw.presence("u7")
        assert p["online"] is True and [x["transport"] for x in p["connections"]] == ["ws"]
        assert p["connections"][0]["instance"] == live.runtime.settings.instance_id
        await c.close()
        for _ in range(50):
            p = await pw.presence("u7")
            if not p["online"]:
                break
            await asyncio.sleep(0.05)
        assert p["online"] is False and p["last_seen"]
        bulk = await pw.presence_many(["u7", "nobody"])
        assert [u["online"] for u in bulk["users"]] == [False, False]


async def test_live_gap_is_filled_from_history(live: LiveServer) -> None:
    """If the bus skips records, a live message past a hole makes the hub fetch the hole first."""
    import msgspec

    from pushwire.messaging.envelope import ENCODER, ClientMessage
    from pushwire.messaging.publish import PublishRequest

    async with await Client.connect(live.ws_url(live.token("gap", ["room.g"]))) as c:
        await c.recv_until("welcome")
        await c.send({"type": "subscribe", "channel": "room.g"})
        await c.recv_until("subscribed")
        rt = live.runtime
        await rt.relay.stop()  # only the gap fill may deliver offsets 1 and 2 (the relay is that fast now)
        reqs = [PublishRequest(channels=("room.g",), event="e", data=msgspec.Raw(str(i).encode())) for i in range(3)]
        results = await rt.publisher.publish_many(live.tenant_id, live.app_id, reqs)
        d = results[2].deliveries[0]
        third = ClientMessage(
            channel="room.g",
            offset=d.offset,
            epoch=d.epoch,
            id=results[2].id,
            event="e",
            data=msgspec.Raw(b"2"),
            ts="2026-01-01T00:00:00.000Z",
        )
        # Before the relay has published anything: offset 3 arrives first, as if 1 and 2 were lost.
        rt.hub.deliver(live.app_id, "room.g", 3, ENCODER.encode(third).decode())
        got = await c.messages(3)
        assert [m["offset"] for m in got] == [1, 2, 3]
        assert rt.connections.gaps_filled >= 1
