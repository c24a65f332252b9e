"""A signed push, delivered over WebSocket and acked: one trace holds every span, correctly linked."""

from __future__ import annotations

import asyncio
import secrets

import httpx

from pushwire.sdk.server import signed_headers
from pushwire.tracing.records import SpanLink
from tests.live import Client, LiveServer
from tests.tracing.conftest import by_name, wait_for_spans

PATH = ["push", "db.commit", "outbox.relay", "kafka.produce", "kafka.consume", "router", "hub.deliver", "client.ack"]


async def test_push_deliver_ack_is_one_linked_trace(live: LiveServer) -> None:
    store = live.runtime.tracing.store
    async with await Client.connect(live.ws_url(live.token("u1"))) as c, live.pusher() as pw:
        await c.recv_until("welcome")
        accepted = await pw.push(users=["u1"], event="greet", data={"n": 1})
        [message] = await c.messages(1)
        assert message["id"] == accepted["id"]
        await c.send({"type": "ack", "channel": "user.u1", "offset": message["offset"]})
        await asyncio.sleep(0.05)
        trace_id = None
        async with asyncio.timeout(5):
            while trace_id is None:
                trace_id = await store.trace_of(accepted["id"])
                await asyncio.sleep(0.05)
        spans = await wait_for_spans(store, trace_id, lambda s: {x.name for x in s} >= set(PATH))
    named = by_name(spans)
    assert all(s.trace_id == trace_id for s in spans)
    ids = {s.span_id: s for s in spans}

    def parent(name: str) -> str:
        return ids[named[name][0].parent_id].name

    [push] = named["push"]
    assert push.parent_id == "" and push.kind == "server"
    assert (
        parent("db.commit"),
        parent("outbox.relay"),
        parent("kafka.produce"),
        parent("kafka.consume"),
        parent("router"),
        parent("hub.deliver"),
        parent("client.ack"),
    ) == ("push", "push", "outbox.relay", "kafka.produce", "kafka.consume", "router", "router")
    deliver = named["hub.deliver"][0]
    assert deliver.attributes["user_id"] == "u1" and deliver.attributes["message_id"] == accepted["id"]
    assert named["client.ack"][0].attributes["user_id"] == "u1"
    assert named["router"][0].attributes["deliveries.total"] == 1
    for span in spans:
        assert span.instance == live.runtime.settings.instance_id and not span.error
        assert span.attributes["app_id"] == live.app_id
        if span.name not in ("push", "db.commit", "hub.deliver"):  # hub.deliver: few attributes, on purpose
            assert span.attributes["channel"] == "user.u1" and span.attributes["offset"] == 1
    assert push.start_ns <= named["hub.deliver"][0].end_ns <= named["client.ack"][0].end_ns
    [recent] = await store.recent(live.app_id)
    assert (recent.message_id, recent.trace_id, recent.channels) == (accepted["id"], trace_id, ["user.u1"])
    assert live.runtime.metrics.messages_in.get(live.app_id) == 1
    assert live.runtime.metrics.messages_out.get(live.app_id) == 1


async def test_incoming_traceparent_is_a_link_of_our_root_push_span(live: LiveServer) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)  # Redis is shared by runs
    body = b'{"channels": ["room.x"], "event": "e", "data": 1}'
    c = live.created
    headers = signed_headers(c.server_key.key_id, c.server_key.secret, "POST", "/api/v1/push", "", body)
    headers |= {"Content-Type": "application/json", "traceparent": f"00-{trace_id}-{caller_span}-01"}
    async with httpx.AsyncClient() as http:
        response = await http.post(live.http + "/api/v1/push", content=body, headers=headers)
    assert response.status_code == 202
    store = live.runtime.tracing.store
    ours = None
    async with asyncio.timeout(10):
        while ours is None:
            ours = await store.trace_of(response.json()["id"])
            await asyncio.sleep(0.05)
    assert ours != trace_id
    spans = await wait_for_spans(store, ours, lambda s: {"push", "kafka.produce"} <= {x.name for x in s})
    [push] = by_name(spans)["push"]
    assert push.parent_id == "" and push.attributes["message_id"] == response.json()["id"]
    assert push.links == [SpanLink(trace_id=trace_id, span_id=caller_span)]
