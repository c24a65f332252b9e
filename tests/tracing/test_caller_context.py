"""Sampling is ours: refused (401) pushes write no spans, and a caller's traceparent neither forces
nor suppresses tracing — it is only a link on our own root push span. Both backend sets."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pushwire.sdk.server import signed_headers
from pushwire.tracing.records import SpanLink
from pushwire.tracing.store import SpanStore, recent_key
from tests.live import LiveServer, live_server
from tests.tracing.conftest import by_name, live_env, wait_for_spans

BODY = b'{"channels": ["room.t"], "event": "e", "data": 1}'
BATCH = b'{"messages": [{"channels": ["room.t"], "event": "e", "data": 1}]}'


@pytest.fixture(params=["single", "mariadb+redis"])
async def unsampled(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(await live_env(request, tmp_path, PUSHWIRE_TRACE_SAMPLE_RATIO="0")) as server:
        yield server


def _traceparent(flags: str = "01") -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-{flags}"


async def _post(live: LiveServer, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=20) as http:
        return await http.post(live.http + path, content=body, headers={"Content-Type": "application/json", **headers})


def _signed(live: LiveServer, path: str, body: bytes, traceparent: str) -> dict[str, str]:
    c = live.created
    return signed_headers(c.server_key.key_id, c.server_key.secret, "POST", path, (), body) | {
        "traceparent": traceparent
    }


async def _assert_nothing_stored(store: SpanStore, live: LiveServer) -> None:
    await store.flush()
    assert store.written == 0 and store.dropped == 0
    assert not store._spans and not store._recent and not store._values
    assert await live.runtime.backends.cache.list_length(recent_key(live.app_id)) == 0


async def test_refused_requests_write_no_spans(live: LiveServer) -> None:
    """Ratio 1 and a sampled caller header: still nothing for a 401, on either push route."""
    store, c = live.runtime.tracing.store, live.created
    for path, body in (("/api/v1/push", BODY), ("/api/v1/push/batch", BATCH)):
        trace_id, _, traceparent = _traceparent("01")
        good = signed_headers(c.server_key.key_id, c.server_key.secret, "POST", path, (), body)
        refusals = [
            {"traceparent": traceparent},  # unsigned
            good | {"X-Pushwire-Signature": "0" * 64, "traceparent": traceparent},  # bad signature
            good | {"X-Pushwire-Key": "nokey", "traceparent": traceparent},  # unknown key
            signed_headers(c.server_key.key_id, "wrong-secret", "POST", path, (), body) | {"traceparent": traceparent},
        ]
        for headers in refusals:
            r = await _post(live, path, body, headers)
            assert r.status_code == 401, r.text
        await asyncio.sleep(0.5)  # past two flush intervals
        await _assert_nothing_stored(store, live)
        assert await store.spans(trace_id) == []


async def test_a_sampled_caller_cannot_force_tracing_at_ratio_zero(unsampled: LiveServer) -> None:
    live, store = unsampled, unsampled.runtime.tracing.store
    for path, body in (("/api/v1/push", BODY), ("/api/v1/push/batch", BATCH)):
        trace_id, _, traceparent = _traceparent("01")
        r = await _post(live, path, body, _signed(live, path, body, traceparent))
        assert r.status_code in (200, 202), r.text
        message_id = r.json()["id"] if path.endswith("push") else r.json()["results"][0]["id"]
        await asyncio.sleep(0.5)  # the relay and router have run; flushes are due
        await _assert_nothing_stored(store, live)
        assert await store.trace_of(message_id) is None and await store.spans(trace_id) == []


async def test_our_ratio_traces_a_push_whose_caller_did_not_sample(live: LiveServer) -> None:
    """Ratio 1 and a `-00` caller header: traced end to end, in our own trace, linked to the caller's span."""
    store = live.runtime.tracing.store
    caller_trace, caller_span, traceparent = _traceparent("00")
    r = await _post(live, "/api/v1/push", BODY, _signed(live, "/api/v1/push", BODY, traceparent))
    assert r.status_code == 202, r.text
    message_id = r.json()["id"]
    trace_id = None
    async with asyncio.timeout(10):
        while trace_id is None:
            trace_id = await store.trace_of(message_id)
            await asyncio.sleep(0.05)
    assert trace_id != caller_trace
    spans = await wait_for_spans(
        store, trace_id, lambda s: {"push", "db.commit", "kafka.produce"} <= {x.name for x in s}
    )
    [push] = by_name(spans)["push"]
    assert push.parent_id == "" and push.attributes["message_id"] == message_id
    assert push.links == [SpanLink(trace_id=caller_trace, span_id=caller_span)]
    assert await store.spans(caller_trace) == []


@pytest.mark.parametrize("header", ["garbage", "00-" + "0" * 32 + "-" + "1" * 16 + "-01", "ff-x-y-01"])
async def test_a_malformed_caller_header_is_ignored(live: LiveServer, header: str) -> None:
    r = await _post(live, "/api/v1/push", BODY, _signed(live, "/api/v1/push", BODY, header))
    assert r.status_code == 202, r.text
    store = live.runtime.tracing.store
    async with asyncio.timeout(10):
        while (trace_id := await store.trace_of(r.json()["id"])) is None:
            await asyncio.sleep(0.05)
    spans = await wait_for_spans(store, trace_id, lambda s: "push" in {x.name for x in s})
    assert by_name(spans)["push"][0].links == []
