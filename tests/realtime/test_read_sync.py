"""Read sync across instances (MariaDB, Redis, Kafka, etcd): an ack on A reaches the user's device on B."""

from __future__ import annotations

import asyncio

import httpx

from tests.live import Client
from tests.tracing.test_cross_instance import two_instances


async def _read_frame(client: Client, channel: str, offset: int) -> dict[str, object]:
    async with asyncio.timeout(15):
        while True:
            frame = await client.recv()
            if frame["type"] == "read":
                assert (frame["channel"], frame["offset"]) == (channel, offset)
                return frame


async def test_an_ack_on_one_instance_is_a_read_frame_on_the_other(mysql_url: str) -> None:
    async with two_instances(mysql_url) as (a, b):
        token = a.token("u1")
        async with (
            await Client.connect(a.ws_url(token)) as phone,
            await Client.connect(b.ws_url(token)) as laptop,
            a.pusher() as pw,
        ):
            await phone.recv_until("welcome")
            await laptop.recv_until("welcome")
            await asyncio.sleep(1.0)  # both routers join the new tenant topic's group
            await pw.push(users=["u1"], event="e", data=1)
            await pw.push(users=["u1"], event="e", data=2)
            [_, second] = await phone.messages(2, timeout=30)
            await laptop.messages(2, timeout=30)
            await phone.send({"type": "ack", "channel": "user.u1", "offset": second["offset"]})
            await _read_frame(laptop, "user.u1", second["offset"])
            # The HTTP ack (long-poll/SSE clients) on B reaches the phone on A the same way.
            await pw.push(users=["u1"], event="e", data=3)
            [third] = await phone.messages(1, timeout=30)
            async with httpx.AsyncClient(base_url=b.http, headers={"Authorization": f"Bearer {token}"}) as http:
                r = await http.post("/api/v1/ack", json={"channel": "user.u1", "offset": third["offset"]})
                assert r.status_code == 200, r.text
            await _read_frame(phone, "user.u1", third["offset"])
        # Each instance told its own connections directly and skipped its own notice from the bus.
        assert a.runtime.read_sync.dropped == 0 and b.runtime.read_sync.dropped == 0
