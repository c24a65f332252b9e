"""Two instances in one process on MariaDB, Redis, the Kafka broker and etcd: a message pushed on A
and delivered on B is one trace, and each instance's console shows the spans the other recorded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx

from pushwire.tracing.views import load_trace
from tests.console.conftest import PASSWORD, Browser
from tests.live import Client, LiveServer, live_server
from tests.services import ETCD_URL, KAFKA_URL, REDIS_URL, unique
from tests.tracing.conftest import by_name, wait_for_spans


@contextlib.asynccontextmanager
async def two_instances(mysql_url: str) -> AsyncIterator[tuple[LiveServer, LiveServer]]:
    run = unique("trx")
    env = {
        "PUSHWIRE_DATABASE_URL": mysql_url,
        "PUSHWIRE_CACHE_URL": REDIS_URL,
        "PUSHWIRE_BUS_URL": KAFKA_URL,
        "PUSHWIRE_REGISTRY_URL": f"{ETCD_URL}/{run}",
        "PUSHWIRE_KAFKA_TOPIC_PREFIX": run,
        "PUSHWIRE_KAFKA_PARTITIONS": "2",
        "PUSHWIRE_SECRET_KEY": "test-secret-key-0123456789",
        "PUSHWIRE_TRACE_SAMPLE_RATIO": "1",  # the test follows one push's trace
    }
    async with (
        live_server({**env, "PUSHWIRE_INSTANCE_ID": f"{run}-a"}) as a,
        live_server({**env, "PUSHWIRE_INSTANCE_ID": f"{run}-b"}) as b,
    ):
        yield a, b


async def test_waterfall_on_each_instance_shows_the_others_spans(mysql_url: str) -> None:
    async with two_instances(mysql_url) as (a, b):
        ida, idb = a.runtime.settings.instance_id, b.runtime.settings.instance_id
        token = a.token("u1")  # A's app; B shares the database, so it verifies the token too
        async with await Client.connect(b.ws_url(token)) as client, a.pusher() as pw:
            await client.recv_until("welcome")
            await asyncio.sleep(1.0)  # B's router joins its group (topics of a new tenant appear on first push)
            accepted = await pw.push(users=["u1"], event="greet", data={"x": 1})
            [message] = await client.messages(1, timeout=30)
            await client.send({"type": "ack", "channel": "user.u1", "offset": message["offset"]})
            # The same ack over HTTP on A: A never delivered it, so it finds the trace in the shared store
            # (once B's router has flushed the delivery's reference there).
            async with asyncio.timeout(10):
                while await a.runtime.tracing.store.ref(a.app_id, "user.u1", message["offset"]) is None:
                    await asyncio.sleep(0.05)
            async with httpx.AsyncClient(base_url=a.http, headers={"Authorization": f"Bearer {token}"}) as http:
                r = await http.post("/api/v1/ack", json={"channel": "user.u1", "offset": message["offset"]})
                assert r.status_code == 200
            store_b = b.runtime.tracing.store
            async with asyncio.timeout(10):
                while (trace_id := await store_b.trace_of(accepted["id"])) is None:
                    await asyncio.sleep(0.1)
            spans = await wait_for_spans(
                store_b, trace_id, lambda s: len([x for x in s if x.name == "client.ack"]) == 2
            )
        named = by_name(spans)
        assert named["push"][0].instance == ida and named["db.commit"][0].instance == ida
        assert {s.instance for s in named["kafka.consume"] + named["router"] + named["hub.deliver"]} == {idb}
        assert {s.instance for s in named["client.ack"]} == {ida, idb}
        ids = {s.span_id: s for s in spans}
        assert {ids[s.parent_id].name for s in named["client.ack"]} == {"router"}
        assert ids[named["kafka.consume"][0].parent_id].name == "kafka.produce"
        # Each instance's waterfall (from its own store client) holds both instances' spans.
        for server in (a, b):
            found = await load_trace(server.runtime.tracing.store, a.app_id, accepted["id"])
            assert found is not None and {s.instance for s in found[1]} == {ida, idb}
        await server_console_shows(b, a.app_id, accepted["id"], ida)


async def server_console_shows(server: LiveServer, app_id: str, message_id: str, other_instance: str) -> None:
    email = f"{unique('op-')}@example.com"
    await server.runtime.accounts.create_user(email, PASSWORD, "operator", None)
    browser = Browser(server.app)
    try:
        assert (await browser.login(email)).status_code == 303
        page = await browser.get(f"/console/apps/{app_id}/traces/{message_id}")
        assert page.status_code == 200 and other_instance in page.text and ">hub.deliver" in page.text
        listing = await browser.get(f"/console/apps/{app_id}/traces")
        assert message_id in listing.text and other_instance in listing.text
    finally:
        await browser.close()
