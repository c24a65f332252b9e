"""Local subscribers get what this instance's relay sends without the bus round trip; the bus
copy that follows is dropped, so each message arrives once, in order (both backend sets)."""

from __future__ import annotations

import asyncio

from tests.live import Client, LiveServer


async def test_local_subscribers_get_messages_while_the_bus_path_is_stopped(live: LiveServer) -> None:
    router = live.runtime.router
    async with await Client.connect(live.ws_url(live.token("u1"))) as c, live.pusher() as pw:
        await c.recv_until("welcome")
        await router.stop()  # nothing comes from the bus now
        try:
            before = router.local
            for i in range(3):
                await pw.push(users=["u1"], event="e", data=i)
            got = await c.messages(3)
            assert [(m["offset"], m["data"]) for m in got] == [(1, 0), (2, 1), (3, 2)]
            assert router.local - before == 3
        finally:
            await router.start()


async def test_the_bus_copy_of_a_locally_delivered_message_is_dropped(live: LiveServer) -> None:
    router = live.runtime.router
    async with await Client.connect(live.ws_url(live.token("u2"))) as c, live.pusher() as pw:
        await c.recv_until("welcome")
        local, duplicates = router.local, router.duplicates
        for i in range(2):
            await pw.push(users=["u2"], event="e", data=i)
        got = await c.messages(2)
        assert [m["offset"] for m in got] == [1, 2]
        async with asyncio.timeout(10):
            while router.duplicates - duplicates < 2:  # the bus copies came, and were dropped
                await asyncio.sleep(0.02)
        assert router.local - local == 2
        # Nothing more: a second copy would come as another message frame.
        try:
            frame = await c.recv(timeout=0.3)
        except TimeoutError:
            frame = None
        assert frame is None or frame["type"] != "message", frame
