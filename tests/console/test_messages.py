"""Message browse/search and replay in the console, on SQLite + memory and MariaDB + Redis."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import msgspec
import sqlalchemy as sa

from pushwire.console.audit import AuditLog
from pushwire.messaging.publish import PublishRequest
from pushwire.storage.models import Message
from tests.console.conftest import Console

ROW_ID = re.compile(r'/messages/([0-9A-Z]{26})">\1</a></td>')


async def push(
    console: Console, channel: str, event: str = "chat", data: bytes = b'{"n": 1}', app_id: str | None = None
) -> str:
    app_id = app_id or console.app_a.app_id
    tenant = console.tenant_a if app_id == console.app_a.app_id else console.tenant_b
    req = PublishRequest(channels=(channel,), event=event, data=msgspec.Raw(data))
    return (await console.runtime.publisher.publish(tenant, app_id, req)).id


async def rows(console: Console, app_id: str, **where: object) -> list[Message]:
    q = sa.select(Message).where(Message.app_id == app_id).order_by(Message.seq)
    for k, v in where.items():
        q = q.where(getattr(Message, k) == v)
    async with console.runtime.backends.database.session() as s:
        return list((await s.scalars(q)).all())


def ids_in(html: str) -> list[str]:
    return ROW_ID.findall(html)


async def test_browse_each_filter_and_scoping(console: Console) -> None:
    b = await console.as_user("admin_a")
    url = f"/console/apps/{console.app_a.app_id}/messages"
    room = [await push(console, "room.a", data=f'{{"n": {i}}}'.encode()) for i in range(3)]
    dm = [await push(console, "user.u1", "dm") for _ in range(2)]
    await asyncio.sleep(0.05)
    middle = dt.datetime.now(dt.UTC)
    await asyncio.sleep(0.05)
    news = await push(console, "broadcast", "news", b'"all"')
    theirs = await push(console, "room.a", data=b'"secret-b"', app_id=console.app_b.app_id)

    page = await b.get(url)
    assert page.status_code == 200 and 'role="search"' in page.text and "Replay a range" in page.text
    assert ids_in(page.text) == [news, *reversed(dm), *reversed(room)]  # newest first
    assert theirs not in page.text and "secret-b" not in page.text
    channel = await b.get(url, hx=True, params={"channel": "room.a"})
    assert channel.text.lstrip().startswith('<div id="messages-results"') and "<html" not in channel.text
    assert ids_in(channel.text) == list(reversed(room)) and theirs not in channel.text
    assert ids_in((await b.get(url, hx=True, params={"user": "u1"})).text) == list(reversed(dm))
    assert ids_in((await b.get(url, hx=True, params={"event": "news"})).text) == [news]
    assert ids_in((await b.get(url, hx=True, params={"id": dm[0].lower()})).text) == [dm[0]]
    assert ids_in((await b.get(url, hx=True, params={"id": theirs})).text) == []
    iso = middle.isoformat().replace("+00:00", "Z")
    assert ids_in((await b.get(url, hx=True, params={"since": iso})).text) == [news]
    assert ids_in((await b.get(url, hx=True, params={"until": iso})).text) == [*reversed(dm), *reversed(room)]
    # A browser's datetime-local has no zone: read as UTC.
    window = {"since": "2000-01-01T00:00", "until": "2999-01-01T00:00:00"}
    assert len(ids_in((await b.get(url, hx=True, params=window)).text)) == 6
    both = await b.get(url, hx=True, params={"event": "chat", "channel": "room.a", "since": "2000-01-01T00:00"})
    assert ids_in(both.text) == list(reversed(room))
    assert ids_in((await b.get(url, hx=True, params={"user": "u1", "channel": "room.a"})).text) == []
    # Another tenant's app, its messages and their detail pages: 404.
    for path in (
        f"/console/apps/{console.app_b.app_id}/messages",
        f"/console/apps/{console.app_b.app_id}/messages/{theirs}",
        f"{url}/{theirs}",
        f"{url}/01AAAAAAAAAAAAAAAAAAAAAAAA",
    ):
        response = await b.get(path)
        assert response.status_code == 404 and "secret-b" not in response.text, path


async def test_browse_pages_older_by_keyset(console: Console) -> None:
    b = await console.as_user("viewer_a")
    url = f"/console/apps/{console.app_a.app_id}/messages"
    req = PublishRequest(channels=("room.p",), event="e", data=msgspec.Raw(b"0"))
    await console.runtime.publisher.publish_many(console.tenant_a, console.app_a.app_id, [req] * 120)
    seen: list[int] = []
    next_url: str | None = url + "?channel=room.p"
    for _ in range(5):  # bounded: a broken cursor must fail, not loop
        if next_url is None:
            break
        page = await b.get(next_url, hx=True)
        assert page.status_code == 200
        seen += [int(o) for o in re.findall(r'<td class="num">(\d+)</td>\s*<td class="mono">room\.p', page.text)]
        m = re.search(r'<a href="([^"]+)" class="older"', page.text)
        next_url = m.group(1).replace("&amp;", "&") if m else None
    assert seen == list(range(120, 0, -1))


async def test_bad_search_input_is_a_422_not_a_500(console: Console) -> None:
    b = await console.as_user("admin_a")
    url = f"/console/apps/{console.app_a.app_id}/messages"
    cases = [
        ({"channel": "bad name!"}, "channel names"),
        ({"user": "a b"}, "user ids"),
        ({"event": "ev ent"}, "events"),
        ({"since": "yesterday"}, "not a date"),
        ({"since": "2026-01-02T00:00", "until": "2026-01-01T00:00"}, "before its start"),
        ({"id": "x'; drop"}, "message ids"),
        ({"before": "x"}, "cursor"),
        ({"before": "9" * 30}, "cursor"),
        ({"since": "0001-01-01T00:00+01:00"}, "between the years"),
        ({"until": "9999-12-31T23:00-05:00"}, "between the years"),
    ]
    for params, text in cases:
        page = await b.get(url, params=params)
        assert page.status_code == 422 and text in page.text and 'role="search"' in page.text, params
        fragment = await b.get(url, params=params, hx=True)
        assert fragment.status_code == 422 and text in fragment.text, params
        assert fragment.headers["hx-retarget"] == "#console-error"


async def test_replay_one_message_to_own_channel_other_channel_and_user(console: Console) -> None:
    b = await console.as_user("admin_a")
    app_id = console.app_a.app_id
    raw = '{"text":  "héllo",\n "n": [1, 2.50]}'.encode()  # spacing and escapes must survive byte for byte
    await push(console, "room.a")
    original = await push(console, "room.a", "chat.message", raw)
    await push(console, "room.other")
    detail = await b.get(f"/console/apps/{app_id}/messages/{original}")
    assert detail.status_code == 200 and "Replay this message" in detail.text and "héllo" in detail.text
    assert f"/console/apps/{app_id}/traces/{original}" in detail.text
    replayed = {}
    for kind, target, channel, offset in (
        ("own", "", "room.a", 3),
        ("channel", "room.other", "room.other", 2),
        ("user", "u7", "user.u7", 1),
    ):
        response = await b.post(
            f"/console/apps/{app_id}/replay", {"message_id": original, "target_kind": kind, "target": target}
        )
        assert response.status_code == 200, response.text
        [row] = await rows(console, app_id, channel=channel, offset=offset)
        assert row.replay_of == original and row.message_id != original and row.event == "chat.message"
        assert row.data.encode() == raw and row.message_id in response.text
        replayed[kind] = row.message_id
    assert len({*replayed.values(), original}) == 4
    # The detail of a replay links to its original; the original lists its replays.
    copy = await b.get(f"/console/apps/{app_id}/messages/{replayed['user']}")
    assert f'/messages/{original}">{original}</a>' in copy.text
    listed = (await b.get(f"/console/apps/{app_id}/messages/{original}")).text
    assert all(i in listed for i in replayed.values())
    bad = await b.post(
        f"/console/apps/{app_id}/replay",
        {"message_id": original, "target_kind": "channel", "target": "no spaces allowed"},
    )
    assert bad.status_code == 422 and "target channel" in bad.text
    entries = await AuditLog(console.runtime.backends.database).entries(console.tenant_a, app_id=app_id)
    audit = [e for e in entries if e.action == "message.replay"]
    assert len(audit) == 3 and all(e.actor == console.emails["admin_a"] and e.target == original for e in audit)
    assert [e.details["to"]["kind"] for e in audit] == ["user", "channel", "own"]
    assert audit[0].details["replayed"] == [
        {"of": original, "from": "room.a#2", "id": replayed["user"], "to": "user.u7#1"}
    ]
    page = await b.get("/console/audit?action=message.replay")
    assert page.text.count('<td class="mono">message.replay</td>') == 3 and replayed["own"] in page.text


async def test_replay_a_range_and_refuse_one_over_the_cap(console: Console) -> None:
    b = await console.as_user("operator")
    app_id = console.app_a.app_id
    originals = [await push(console, "room.r", "e", str(i).encode()) for i in range(1, 6)]
    response = await b.post(
        f"/console/apps/{app_id}/replay",
        {"channel": "room.r", "from_offset": "2", "to_offset": "4", "target_kind": "channel", "target": "room.copy"},
        hx=False,
    )
    assert response.status_code == 200 and "<html" in response.text and "Replayed 3 deliveries" in response.text
    copies = await rows(console, app_id, channel="room.copy")
    assert [(r.offset, r.replay_of, r.data) for r in copies] == [
        (1, originals[1], "2"),
        (2, originals[2], "3"),
        (3, originals[3], "4"),
    ]
    assert len({r.message_id for r in copies}) == 3
    own = await b.post(f"/console/apps/{app_id}/replay", {"channel": "room.r", "from_offset": "1", "to_offset": "2"})
    assert own.status_code == 200
    assert [(r.offset, r.replay_of) for r in await rows(console, app_id, channel="room.r")][5:] == [
        (6, originals[0]),
        (7, originals[1]),
    ]
    before = len(await rows(console, app_id))
    for form, text in (
        ({"from_offset": "1", "to_offset": "1001"}, "at most 1,000"),
        ({"from_offset": "5", "to_offset": "2"}, "before its first"),
        ({"from_offset": "100", "to_offset": "200"}, "no stored messages"),
        ({"from_offset": "x", "to_offset": "2"}, "whole number"),
    ):
        refused = await b.post(f"/console/apps/{app_id}/replay", {"channel": "room.r", **form})
        assert refused.status_code == 422 and text in refused.text, form
    assert len(await rows(console, app_id)) == before
    [entry, *_] = await AuditLog(console.runtime.backends.database).entries(
        None, app_id=app_id, action="message.replay"
    )
    assert entry.target == "room.r#1..2" and entry.details["source"] == {
        "channel": "room.r",
        "from_offset": 1,
        "to_offset": 2,
    }


async def test_replay_refusals_publish_nothing(console: Console) -> None:
    app_id, theirs_app = console.app_a.app_id, console.app_b.app_id
    mine = await push(console, "room.a")
    theirs = await push(console, "room.b", app_id=theirs_app)
    admin = await console.as_user("admin_a")
    for path, form in (
        (f"/console/apps/{app_id}/replay", {"message_id": "01AAAAAAAAAAAAAAAAAAAAAAAA"}),
        (f"/console/apps/{app_id}/replay", {"message_id": theirs}),
        (f"/console/apps/{theirs_app}/replay", {"message_id": theirs}),
        (f"/console/apps/{theirs_app}/replay", {"channel": "room.b", "from_offset": "1", "to_offset": "1"}),
    ):
        assert (await admin.post(path, form)).status_code == 404, (path, form)
    for token in ("", "forged-token"):
        refused = await admin.post(f"/console/apps/{app_id}/replay", {"message_id": mine}, csrf=token)
        assert refused.status_code == 403 and "security token" in refused.text
    viewer = await console.as_user("viewer_a")
    for page in (f"/console/apps/{app_id}/messages", f"/console/apps/{app_id}/messages/{mine}"):
        text = (await viewer.get(page)).text
        forms = text.replace('method="post" action="/console/logout"', "")
        assert "/replay" not in text and 'method="post"' not in forms
    for hx in (True, False):
        refused = await viewer.post(f"/console/apps/{app_id}/replay", {"message_id": mine}, hx=hx)
        assert refused.status_code == 403 and "read-only" in refused.text
    assert len(await rows(console, app_id)) == 1 and len(await rows(console, theirs_app)) == 1
    assert await AuditLog(console.runtime.backends.database).entries(None, app_id=app_id, action="message.replay") == []
