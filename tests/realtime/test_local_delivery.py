"""Local subscribers get what this instance's relay sends without the bus round trip; the bus
copy that follows is dropped, so each message arrives once, in order (both backend sets)."""

from __future__ import annotations

import asyncio

import pytest

from tests.live import Client, LiveServer


@pytest.fixture(autouse=True)
def _unsampled(live: LiveServer) -> None:
    """No push is traced unless a test says so (a sampled one would go by the bus only)."""
    live.runtime.tracing.ratio = 0.0


async def test_local_subscribers_get_messages_while_the_bus_path_is_stopped(live: LiveServer) -> None:
    router = live.runtime.router
    async with await Client.connect(live.ws_url(live.token("u1"))) as c, live.pusher() as pw:
        await c.recv_until("welcome")
        await pw.push(users=["u1"], event="e", data=0)
        # Sent before the router followed the channel: it comes by the bus, which marks offset 1.
        assert [m["offset"] for m in await c.messages(1)] == [1]
        await router.stop()  # nothing comes from the bus now
        try:
            before = router.local
            for i in range(1, 4):
                await pw.push(users=["u1"], event="e", data=i)
            got = await c.messages(3)
            assert [(m["offset"], m["data"]) for m in got] == [(2, 1), (3, 2), (4, 3)]
            assert router.local - before == 3
        finally:
            await router.start()


async def test_the_bus_copy_of_a_locally_delivered_message_is_dropped(live: LiveServer) -> None:
    router = live.runtime.router
    async with await Client.connect(live.ws_url(live.token("u2"))) as c, live.pusher() as pw:
        await c.recv_until("welcome")
        await pw.push(users=["u2"], event="e", data=0)
        assert [m["offset"] for m in await c.messages(1)] == [1]  # by the bus: the channel is new
        local, duplicates = router.local, router.duplicates
        for i in range(1, 3):
            await pw.push(users=["u2"], event="e", data=i)
        got = await c.messages(2)
        assert [m["offset"] for m in got] == [2, 3]
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


async def test_a_row_left_to_the_bus_holds_the_local_path_back_so_no_hole_opens(live: LiveServer) -> None:
    """A sampled message goes by the bus (its delivery spans); the rows after it wait for it
    there instead of overtaking it locally, so the subscriber sees no gap and refills nothing."""
    rt = live.runtime
    router = rt.router
    async with await Client.connect(live.ws_url(live.token("u3"))) as c, live.pusher() as pw:
        await c.recv_until("welcome")
        await pw.push(users=["u3"], event="e", data=0)
        assert [m["offset"] for m in await c.messages(1)] == [1]
        gaps = rt.connections.gaps_filled
        await router.stop()
        try:
            rt.tracing.ratio = 1.0
            await pw.push(users=["u3"], event="e", data=1)
            rt.tracing.ratio = 0.0
            await pw.push(users=["u3"], event="e", data=2)
            await asyncio.sleep(0.5)
            try:
                early = await c.recv(timeout=0.2)
            except TimeoutError:
                early = None
            assert early is None or early["type"] != "message", early  # offset 3 did not overtake 2
        finally:
            await router.start()
        got = await c.messages(2)
        assert [m["offset"] for m in got] == [2, 3]
        assert rt.connections.gaps_filled == gaps
