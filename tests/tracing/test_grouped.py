"""Single pushes that share one group-commit transaction each keep their own trace: own push,
own db.commit linked to the shared one, and the downstream spans, under their own message id."""

from __future__ import annotations

import asyncio

from pushwire.tracing.records import SpanLink, StoredSpan
from pushwire.tracing.views import load_trace, waterfall
from tests.live import Client, LiveServer
from tests.tracing.conftest import by_name, wait_for_spans

N = 5
WANT = {"push", "db.commit", "outbox.relay", "kafka.produce", "kafka.consume", "router", "hub.deliver"}


async def test_grouped_single_pushes_keep_their_own_traces(live: LiveServer) -> None:
    rt, store = live.runtime, live.runtime.tracing.store
    group = rt.group_commit
    key = (live.tenant_id, live.app_id)
    users = [f"g{i}" for i in range(N)]
    clients = [await Client.connect(live.ws_url(live.token(u))) for u in users]
    try:
        for c in clients:
            await c.recv_until("welcome")
        async with live.pusher() as pw:
            # Hold the commits until all N pushes wait, so they share one transaction.
            before = (group.transactions, group.grouped)
            group.max_inflight = 0
            pushes = [asyncio.create_task(pw.push(users=[u], event="e", data=i)) for i, u in enumerate(users)]
            async with asyncio.timeout(10):
                while len(group._pending.get(key, [])) < N:
                    await asyncio.sleep(0.01)
            group.max_inflight = 4
            group._kick()
            accepted = await asyncio.gather(*pushes)
        assert (group.transactions, group.grouped) == (before[0] + 1, before[1] + N)
        for c, a in zip(clients, accepted, strict=True):
            [m] = await c.messages(1)
            assert m["id"] == a["id"]
    finally:
        for c in clients:
            await c.close()

    trace_ids = []
    shared: set[SpanLink] = set()
    for a in accepted:
        message_id = a["id"]
        async with asyncio.timeout(10):
            while (trace_id := await store.trace_of(message_id)) is None:
                await asyncio.sleep(0.05)
        trace_ids.append(trace_id)
        await wait_for_spans(store, trace_id, lambda s: {x.name for x in s} >= WANT)
        # What the console's waterfall page loads for this message.
        found = await load_trace(store, live.app_id, message_id)
        assert found is not None and found[0] == trace_id
        spans = found[1]
        named = by_name(spans)
        assert set(named) >= WANT, sorted(named)
        [push] = named["push"]
        [commit] = named["db.commit"]
        assert push.attributes["message_id"] == message_id and push.parent_id == ""
        assert commit.parent_id == push.span_id and commit.attributes["message_id"] == message_id
        assert commit.attributes["commit.messages"] == N
        [link] = commit.links
        shared.add(link)
        assert link.trace_id != trace_id
        assert all(s.attributes.get("message_id", message_id) == message_id for s in spans)
        assert _parent(spans, "outbox.relay") == "push" and _parent(spans, "router") == "kafka.consume"
        assert {r.span.name for r in waterfall(spans)} >= WANT
    assert len(set(trace_ids)) == N  # each message its own trace

    # The one shared transaction span, linked back to every member's push span.
    [link] = shared
    spans = await wait_for_spans(store, link.trace_id, lambda s: any(x.span_id == link.span_id for x in s))
    [tx] = [s for s in spans if s.span_id == link.span_id]
    assert tx.name == "db.commit" and tx.parent_id == "" and tx.attributes["messages"] == N
    assert len(tx.links) == N and {lk.trace_id for lk in tx.links} == set(trace_ids)
    recent = {e.message_id: e.trace_id for e in await store.recent(live.app_id)}
    assert [recent[a["id"]] for a in accepted] == trace_ids


def _parent(spans: list[StoredSpan], name: str) -> str:
    ids = {s.span_id: s for s in spans}
    [span] = by_name(spans)[name]
    return ids[span.parent_id].name
