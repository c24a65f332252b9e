"""The queue-depth page: hot history, outbox backlog, lag and rates with sparklines; tenant scoping."""

from __future__ import annotations

import asyncio
import re

import msgspec
import sqlalchemy as sa

from pushwire.messaging.hot_history import hot_key
from pushwire.messaging.publish import PublishRequest
from pushwire.metrics.sampler import Sampler
from pushwire.storage.models import OutboxEntry
from tests.console.conftest import Console


async def _publish(console: Console, channel: str, n: int) -> None:
    rt, app_id = console.runtime, console.app_a.app_id
    for i in range(n):
        req = PublishRequest(channels=(channel,), event="e", data=msgspec.Raw(b'{"i": %d}' % i))
        await rt.publisher.publish(console.tenant_a, app_id, req)
    rt.notify_published()


async def _outbox(console: Console) -> int:
    async with console.runtime.backends.database.session() as s:
        q = sa.select(sa.func.count()).select_from(OutboxEntry).where(OutboxEntry.app_id == console.app_a.app_id)
        return int(await s.scalar(q) or 0)


async def test_page_and_fragment_show_depths_backlog_lag_and_sparklines(console: Console) -> None:
    rt, app_id = console.runtime, console.app_a.app_id
    await _publish(console, "room.hot", 3)
    for _ in range(200):  # the relay fills the hot history, produces to the bus and empties the outbox
        if await rt.backends.cache.list_length(hot_key(app_id, "room.hot")) == 3 and not await _outbox(console):
            break
        await asyncio.sleep(0.05)
    await rt.relay.stop()
    await _publish(console, "room.cold", 2)  # no relay: these wait in the outbox
    sampler: Sampler = console.app.state.sampler  # the lifespan is not run here: tick it by hand
    assert await sampler.record() is not None
    rt.metrics.message_in(app_id, 4)
    await asyncio.sleep(0.2)
    assert await sampler.record() is not None

    b = await console.as_user("admin_a")
    page = await b.get(f"/console/apps/{app_id}/queues")
    assert page.status_code == 200 and 'hx-trigger="every 2s"' in page.text and "Queue depth" in page.text
    live = await b.get(f"/console/apps/{app_id}/queues/live", hx=True)
    assert live.status_code == 200 and live.text.lstrip().startswith('<div id="queues-live"')
    text = live.text
    assert re.search(r'<td class="mono">room\.hot</td><td>3</td><td class="hot-length">3</td>', text), text
    assert re.search(r'<td class="mono">room\.cold</td><td>2</td><td class="hot-length">0</td>', text), text
    assert text.index("room.hot") < text.index("room.cold")  # busiest first
    assert re.search(r'id="outbox-backlog">2<', text)
    assert text.count('<svg class="spark"') >= 4 and re.search(r'<polyline points="[0-9. ,]+"', text)
    assert rt.settings.instance_id in text and f"pushwire.{console.tenant_a}" in text
    assert "none yet" not in text  # this instance has samples
    # The console's CSP allows no inline style or script: sparklines are plain SVG attributes.
    assert "style=" not in page.text and "<script>" not in page.text


async def test_other_tenants_get_404_and_logged_out_users_the_login(console: Console) -> None:
    app_id = console.app_a.app_id
    other = await console.as_user("admin_b")
    for path in (f"/console/apps/{app_id}/queues", f"/console/apps/{app_id}/queues/live"):
        r = await other.get(path)
        assert r.status_code == 404 and app_id not in r.text
    mine = await console.as_user("viewer_a")  # read-only users may watch
    assert (await mine.get(f"/console/apps/{app_id}/queues")).status_code == 200
    op = await console.as_user("operator")
    assert (await op.get(f"/console/apps/{console.app_b.app_id}/queues/live", hx=True)).status_code == 200
    anon = console.browser()
    r = await anon.get(f"/console/apps/{app_id}/queues")
    assert r.status_code == 303 and r.headers["location"].endswith("/console/login")
    r = await anon.get(f"/console/apps/{app_id}/queues/live", hx=True)
    assert r.status_code == 401 and r.headers["hx-redirect"].endswith("/console/login")
