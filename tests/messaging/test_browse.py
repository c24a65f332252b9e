"""MessageBrowser on SQLite and MariaDB: each filter, keyset pages, app scoping, refused input."""

from __future__ import annotations

import asyncio
import datetime as dt

import msgspec
import pytest

from pushwire.messaging.browse import MAX_PAGE, BrowseFilter
from pushwire.messaging.publish import PublishRequest
from pushwire.tenants.service import Invalid
from tests.messaging.conftest import Services


async def publish(s: Services, channel: str, event: str = "e", data: bytes = b"1", app: str | None = None) -> str:
    app_id = app or s.app_id
    tenant = s.tenant_id if app_id == s.app_id else s.other_tenant
    req = PublishRequest(channels=(channel,), event=event, data=msgspec.Raw(data))
    return (await s.publisher.publish(tenant, app_id, req)).id


async def ids(s: Services, **query: object) -> list[str]:
    page = await s.browser.search(s.app_id, BrowseFilter(**query))  # type: ignore[arg-type]
    return [r.message_id for r in page.rows]


async def test_each_filter_newest_first_and_scoped_to_the_app(services: Services) -> None:
    s = services
    room = [await publish(s, "room.a", "chat") for _ in range(2)]
    dm = await publish(s, "user.u1", "dm", '{"t": "é"}'.encode())
    await asyncio.sleep(0.05)
    middle = dt.datetime.now(dt.UTC)
    await asyncio.sleep(0.05)
    news = await publish(s, "broadcast", "news", b'"' + b"x" * 500 + b'"')
    theirs = await publish(s, "room.a", "chat", app=s.other_app)
    assert await ids(s) == [news, dm, *reversed(room)]
    assert await ids(s, channel="room.a") == list(reversed(room))
    assert await ids(s, user="u1") == [dm]
    assert await ids(s, user="u1", channel="room.a") == []
    assert await ids(s, event="news") == [news]
    assert await ids(s, message_id=dm) == [dm]
    assert await ids(s, message_id=theirs) == []
    assert await ids(s, since=middle) == [news]
    assert await ids(s, until=middle) == [dm, *reversed(room)]
    assert await ids(s, since=middle - dt.timedelta(hours=1), until=middle, event="chat") == list(reversed(room))
    page = await s.browser.search(s.app_id, BrowseFilter(event="news"))
    [row] = page.rows
    assert row.size == 502 and len(row.preview) == 120 and row.preview.endswith("…") and row.replay_of is None
    [small] = (await s.browser.search(s.app_id, BrowseFilter(message_id=dm))).rows
    assert (small.size, small.preview, small.channel, small.offset) == (
        len('{"t": "é"}'.encode()),
        '{"t": "é"}',
        "user.u1",
        1,
    )
    assert await s.browser.deliveries(s.app_id, theirs) == []


async def test_keyset_pages_by_seq(services: Services) -> None:
    s = services
    req = PublishRequest(channels=("room.p",), event="e", data=msgspec.Raw(b"0"))
    await s.publisher.publish_many(s.tenant_id, s.app_id, [req] * 25)
    await publish(s, "room.q")
    for channel in ("room.p", None):
        offsets, before = [], None
        for _ in range(10):  # bounded: a broken cursor must fail, not loop
            page = await s.browser.search(s.app_id, BrowseFilter(channel=channel, before=before, limit=10))
            offsets += [(r.channel, r.offset) for r in page.rows]
            if page.older is None:
                break
            before = page.older
        expected = [("room.p", o) for o in range(25, 0, -1)]
        assert offsets == (expected if channel else [("room.q", 1), *expected])


@pytest.mark.parametrize(
    "query, text",
    [
        ({"channel": "no spaces"}, "channel names"),
        ({"user": "a/b"}, "user ids"),
        ({"event": "a b"}, "events"),
        ({"message_id": "x" * 33}, "message ids"),
        ({"since": dt.datetime(2026, 1, 1)}, "time zone"),
        ({"since": dt.datetime(2026, 1, 2, tzinfo=dt.UTC), "until": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}, "before"),
        ({"limit": MAX_PAGE + 1}, "page size"),
        ({"limit": 0}, "page size"),
        ({"before": 0}, "cursor"),
    ],
)
async def test_bad_filters_are_refused_before_any_query(
    services: Services, query: dict[str, object], text: str
) -> None:
    with pytest.raises(Invalid, match=text):
        await services.browser.search(services.app_id, BrowseFilter(**query))  # type: ignore[arg-type]
