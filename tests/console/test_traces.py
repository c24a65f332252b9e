"""The traces pages: recent list, its polled fragment, filters, the waterfall, and tenant scoping."""

from __future__ import annotations

import asyncio
import re
import time

from pushwire.tracing.records import RecentEntry, StoredSpan
from tests.console.conftest import Console


async def _traced_push(console: Console, target: str = "u1") -> str:
    b = await console.as_user("admin_a")
    app_id = console.app_a.app_id
    response = await b.post(
        f"/console/apps/{app_id}/try/push",
        {"target_kind": "user", "target": target, "event": "console.test", "data": "{}"},
    )
    assert response.status_code == 200, response.text
    message_id = re.search(r'<strong class="mono">([^<]+)</strong>', response.text).group(1)  # type: ignore[union-attr]
    assert f'href="/console/apps/{app_id}/traces/{message_id}"' in response.text
    store = console.runtime.tracing.store
    async with asyncio.timeout(10):  # recorded by the relay too (kafka.produce) before we look
        while True:
            trace_id = await store.trace_of(message_id)
            if trace_id and "kafka.produce" in {s.name for s in await store.spans(trace_id)}:
                return message_id
            await asyncio.sleep(0.1)


async def test_list_fragment_and_waterfall(console: Console) -> None:
    message_id = await _traced_push(console)
    b = await console.as_user("viewer_a")  # read-only roles see traces too
    base = f"/console/apps/{console.app_a.app_id}/traces"
    page = await b.get(base)
    assert page.status_code == 200 and message_id in page.text and 'id="traces-filter"' in page.text
    assert "Content-Security-Policy" in page.headers and " style=" not in page.text
    live = await b.get(base + "/live", hx=True)
    assert live.status_code == 200 and message_id in live.text and 'hx-trigger="every 3s"' in live.text
    assert "<html" not in live.text
    wf = await b.get(f"{base}/{message_id}")
    assert wf.status_code == 200, wf.text
    for name in ("push", "db.commit", "outbox.relay", "kafka.produce"):
        assert f">{name}" in wf.text, name
    assert wf.text.count("<rect ") == wf.text.count("<tr class=") and "<svg" in wf.text and " style=" not in wf.text
    assert 'class="span d1"' in wf.text and 'class="span d2"' in wf.text  # children indented under parents


async def test_filters(console: Console) -> None:
    message_id = await _traced_push(console, "u7")
    b = await console.as_user("admin_a")
    base = f"/console/apps/{console.app_a.app_id}/traces/live"

    async def shown(**params: str) -> bool:
        response = await b.get(base, hx=True, params=params)
        assert response.status_code == 200
        return message_id in response.text

    assert await shown(channel="user.u7") and not await shown(channel="room.other")
    assert await shown(user="u7") and not await shown(user="u8")
    assert await shown(min_ms="0") and not await shown(min_ms="600000")
    assert not await shown(failed="1")
    # A failed message recorded by another instance: only it passes "failed".
    store, now = console.runtime.tracing.store, time.time_ns()
    trace_id = "ab" * 16
    store.add_span(
        StoredSpan(
            trace_id=trace_id,
            span_id="cd" * 8,
            name="outbox.relay",
            start_ns=now,
            end_ns=now + 5_000_000,
            instance="other-1",
            error=True,
            status_message="bus down",
            attributes={"app_id": console.app_a.app_id, "message_id": "M-FAILED"},
        )
    )
    store.add_recent(
        RecentEntry(
            trace_id=trace_id,
            app_id=console.app_a.app_id,
            event="e",
            channels=["room.z"],
            ts_ns=now,
            message_id="M-FAILED",
        )
    )
    await store.flush()
    failed = await b.get(base, hx=True, params={"failed": "1"})
    assert "M-FAILED" in failed.text and message_id not in failed.text and "other-1" in failed.text
    wf = await b.get(f"/console/apps/{console.app_a.app_id}/traces/M-FAILED")
    assert wf.status_code == 200 and "bus down" in wf.text and 'class="failed"' in wf.text


async def test_unknown_message_and_other_tenants_are_404(console: Console) -> None:
    message_id = await _traced_push(console)
    mine, theirs = console.app_a.app_id, console.app_b.app_id
    a = await console.as_user("admin_a")
    for path in (f"/console/apps/{mine}/traces/01UNKNOWNMESSAGEID000000", f"/console/apps/{mine}/traces/{'f' * 32}"):
        response = await a.get(path)
        assert response.status_code == 404 and "There is no such object" in response.text
    # Tenant B: not A's app pages, and not A's message through B's own app either.
    b = await console.as_user("admin_b")
    for path, hx in (
        (f"/console/apps/{mine}/traces", False),
        (f"/console/apps/{mine}/traces/live", True),
        (f"/console/apps/{mine}/traces/{message_id}", False),
        (f"/console/apps/{theirs}/traces/{message_id}", False),
    ):
        response = await b.get(path, hx=hx)
        assert response.status_code == 404, path
        assert message_id not in response.text
    assert message_id not in (await b.get(f"/console/apps/{theirs}/traces")).text
