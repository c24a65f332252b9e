"""static/pushwire.js in headless Chromium against a live Pushwire server.

The page comes from another origin than the server (see conftest.py): WebSocket, long-poll and
ack all run cross-origin, as on a tenant's site.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.browser.conftest import HEARTBEAT
from tests.live import LiveServer

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Short polls keep these tests quick (the server lets go of a poll as soon as the browser hangs up).
POLL_TIMEOUT = 2

START = """
async ({url, token, channels, transports, positions, tokenFn, pollTimeout}) => {
  window.received = [];
  window.statuses = [];
  window.gaps = [];
  window.errors = [];
  window.subscribed = {};
  window.tokenCalls = 0;
  const options = {
    url,
    channels,
    token: tokenFn ? async () => { window.tokenCalls += 1; return await window.mintToken(); } : token,
    onMessage: (m) => window.received.push(m),
    onGap: (g) => window.gaps.push(g),
    onError: (e) => window.errors.push(e),
    onStatus: (s, d) => window.statuses.push({status: s, transport: d.transport ?? null, code: d.code ?? null}),
    onSubscribed: (channel, info) => { window.subscribed[channel] = info; },
  };
  if (transports) options.transports = transports;
  if (positions) options.positions = positions;
  if (pollTimeout) options.pollTimeout = pollTimeout;
  window.client = new window.PushwireClient(options);
  await window.client.connect();
  return window.client.transport;
}
"""


async def load(page: Page, origin: str) -> None:
    await page.goto(f"{origin}/index.html")
    await page.wait_for_function("window.pushwireLoaded === true")


async def start(page: Page, live: LiveServer, channels: list[str], **kw: Any) -> str:
    args = {
        "url": live.http,
        "token": kw.pop("token", None),
        "channels": channels,
        "transports": None,
        "positions": None,
        "tokenFn": False,
        "pollTimeout": POLL_TIMEOUT,
        **kw,
    }
    return await page.evaluate(START, args)  # type: ignore[no-any-return]


async def wait_for(page: Page, expression: str, arg: Any = None, timeout: float = 15) -> None:
    try:
        await page.wait_for_function(expression, arg=arg, timeout=timeout * 1000)
    except PlaywrightTimeout:
        state = await page.evaluate(
            "({statuses: window.statuses, gaps: window.gaps, errors: window.errors, subscribed: window.subscribed,"
            " received: (window.received || []).map((m) => `${m.channel}#${m.offset}=${JSON.stringify(m.data)}`)})"
        )
        raise AssertionError(f"timed out waiting for {expression}; page state: {state}") from None


async def received(page: Page, channel: str) -> list[dict[str, Any]]:
    return await page.evaluate("(ch) => window.received.filter((m) => m.channel === ch)", channel)  # type: ignore[no-any-return]


async def opens(page: Page) -> list[dict[str, Any]]:
    return await page.evaluate("window.statuses.filter((s) => s.status === 'open')")  # type: ignore[no-any-return]


async def stored_ack(live: LiveServer, user: str, channel: str, want: int, timeout: float = 5) -> int:
    acks = live.runtime.connections.acks
    async with asyncio.timeout(timeout):
        while (got := await acks.get(live.app_id, user, channel)) != want:
            await asyncio.sleep(0.05)
    return got


def assert_stream(messages: list[dict[str, Any]], offsets: list[int], data: list[Any] | None = None) -> None:
    assert [m["offset"] for m in messages] == offsets
    if data is not None:
        assert [m["data"] for m in messages] == data
    assert len({m["epoch"] for m in messages}) <= 1


async def test_websocket_delivers_in_order_answers_pings_and_acks(
    live: LiveServer, page: Page, page_origin: str
) -> None:
    ack_requests: list[str] = []
    page.on("request", lambda r: ack_requests.append(r.url) if "/api/v1/ack" in r.url else None)
    await load(page, page_origin)
    assert await start(page, live, ["room.a"], token=live.token("u1", ["room.*"])) == "ws"
    await wait_for(page, "window.subscribed['room.a']")

    async with live.pusher() as pw:
        for i in range(10):
            await pw.push(channels=["room.a"], event="n", data=i)
        for i in range(3):
            await pw.push(users=["u1"], event="p", data=i)
        await pw.push(broadcast=True, event="b", data="all")
    await wait_for(page, "window.received.length >= 14")

    assert_stream(await received(page, "room.a"), list(range(1, 11)), list(range(10)))
    assert_stream(await received(page, "user.u1"), [1, 2, 3], [0, 1, 2])
    assert_stream(await received(page, "broadcast"), [1], ["all"])

    # Acks go over the open WebSocket, not HTTP.
    await page.evaluate("window.client.ack('user.u1', 2)")
    assert await stored_ack(live, "u1", "user.u1", 2) == 2
    assert ack_requests == []

    # The server pings after HEARTBEAT s of silence and closes a client silent for 2 x HEARTBEAT:
    # the client answers with pongs, so the one connection lives on.
    (session_id,) = live.runtime.hub.sessions
    await asyncio.sleep(2 * HEARTBEAT + 1.5)
    assert list(live.runtime.hub.sessions) == [session_id]
    assert len(await opens(page)) == 1
    assert await page.evaluate("window.gaps") == []
    await page.evaluate("window.client.close()")


async def test_reconnects_and_resumes_a_room_without_gaps(live: LiveServer, page: Page, page_origin: str) -> None:
    await load(page, page_origin)
    await start(page, live, ["room.a"], token=live.token("u1", ["room.*"]))
    await wait_for(page, "window.subscribed['room.a']")
    async with live.pusher() as pw:
        for i in range(5):
            await pw.push(channels=["room.a"], event="n", data=i)
        await pw.push(broadcast=True, event="b", data=0)
        await wait_for(page, "window.received.length >= 6")

        for s in list(live.runtime.hub.sessions.values()):
            s.close_soon(4500, "test")
        # Published while the client is away: the room and broadcast come back through `since`,
        # the personal channel through the server's unread replay.
        for i in range(5, 12):
            await pw.push(channels=["room.a"], event="n", data=i)
        await pw.push(broadcast=True, event="b", data=1)
        await pw.push(users=["u1"], event="p", data="while away")

        await wait_for(page, "window.statuses.filter((s) => s.status === 'open').length >= 2")
        await wait_for(page, "window.subscribed['room.a'] && window.received.length >= 15")
        # Live again after the resume.
        await pw.push(channels=["room.a"], event="n", data=12)
        await wait_for(page, "window.received.length >= 16")

    assert_stream(await received(page, "room.a"), list(range(1, 14)), list(range(13)))
    assert_stream(await received(page, "broadcast"), [1, 2], [0, 1])
    assert_stream(await received(page, "user.u1"), [1], ["while away"])
    statuses = await page.evaluate("window.statuses")
    assert {"status": "reconnecting", "transport": "ws", "code": 4500} in statuses
    assert (await page.evaluate("window.subscribed['room.a']"))["recovered"] is True
    assert await page.evaluate("window.gaps") == []
    await page.evaluate("window.client.close()")


async def test_long_poll_when_websocket_is_missing(live: LiveServer, page: Page, page_origin: str) -> None:
    await page.add_init_script("delete window.WebSocket")
    await load(page, page_origin)
    async with live.pusher() as pw:
        await pw.push(users=["u2"], event="p", data="unread")  # before connecting: the first poll has it
        assert await start(page, live, ["room.a"], token=live.token("u2", ["room.*"])) == "longpoll"
        await wait_for(page, "window.subscribed['room.a'] && window.received.length >= 1")
        for i in range(5):
            await pw.push(channels=["room.a"], event="n", data=i)
        await pw.push(users=["u2"], event="p", data="live")
        await wait_for(page, "window.received.length >= 7")

        # A room added while a poll is waiting: the poll is restarted with it, nothing is lost.
        await page.evaluate("window.client.subscribe('room.b')")
        await wait_for(page, "window.subscribed['room.b']")
        await pw.push(channels=["room.b"], event="n", data="b")
        await pw.push(channels=["room.a"], event="n", data=5)
        await wait_for(page, "window.received.length >= 9")

    assert_stream(await received(page, "user.u2"), [1, 2], ["unread", "live"])
    assert_stream(await received(page, "room.a"), list(range(1, 7)), list(range(6)))
    assert_stream(await received(page, "room.b"), [1], ["b"])
    assert await page.evaluate("window.client.transport") == "longpoll"

    # Acks over long-poll: POST /api/v1/ack, answered with the stored offset.
    assert await page.evaluate("window.client.ack('user.u2', 2)") == {"channel": "user.u2", "offset": 2}
    assert await stored_ack(live, "u2", "user.u2", 2) == 2
    assert await page.evaluate("window.gaps") == []
    assert await page.evaluate("window.errors") == []
    await page.evaluate("window.client.close()")


async def test_falls_back_to_long_poll_when_websocket_fails_to_open_twice(
    live: LiveServer, page: Page, page_origin: str
) -> None:
    # A WebSocket that never opens (as behind a proxy that refuses upgrades).
    await page.add_init_script("""
      window.wsAttempts = 0;
      window.WebSocket = class {
        constructor() {
          window.wsAttempts += 1;
          this.readyState = 0;
          setTimeout(() => {
            this.readyState = 3;
            this.onerror && this.onerror({});
            this.onclose && this.onclose({code: 1006, reason: ""});
          }, 10);
        }
        send() {}
        close() {}
      };
    """)
    await load(page, page_origin)
    assert await start(page, live, [], token=live.token("u3")) == "longpoll"
    assert await page.evaluate("window.wsAttempts") == 2
    async with live.pusher() as pw:
        await pw.push(users=["u3"], event="p", data="hello")
    await wait_for(page, "window.received.length >= 1")
    assert [m["data"] for m in await received(page, "user.u3")] == ["hello"]
    await page.evaluate("window.client.close()")


async def test_close_4001_refreshes_the_token(live: LiveServer, page: Page, page_origin: str) -> None:
    await page.expose_function("mintToken", lambda: live.token("u4", ["room.*"]))
    await load(page, page_origin)
    assert await start(page, live, ["room.a"], tokenFn=True) == "ws"
    assert await page.evaluate("window.tokenCalls") == 1
    for s in list(live.runtime.hub.sessions.values()):
        s.close_soon(4001, "token expired")
    await wait_for(page, "window.statuses.filter((s) => s.status === 'open').length >= 2")
    assert await page.evaluate("window.tokenCalls") == 2
    await wait_for(page, "window.subscribed['room.a']")
    async with live.pusher() as pw:
        await pw.push(channels=["room.a"], event="n", data="after")
    await wait_for(page, "window.received.length >= 1")
    assert {"status": "reconnecting", "transport": "ws", "code": 4001} in await page.evaluate("window.statuses")
    await page.evaluate("window.client.close()")


async def test_unrecoverable_position_is_reported_as_a_gap(live: LiveServer, page: Page, page_origin: str) -> None:
    async with live.pusher() as pw:
        for i in range(3):
            await pw.push(channels=["room.a"], event="n", data=i)
        await load(page, page_origin)
        # Resume from a position of an epoch the server no longer has (history reset).
        positions = {"room.a": {"epoch": "stale-epoch", "offset": 1}}
        await start(page, live, ["room.a"], token=live.token("u5", ["room.*"]), positions=positions)
        await wait_for(page, "window.subscribed['room.a']")
        await pw.push(channels=["room.a"], event="n", data=3)
        await wait_for(page, "window.received.length >= 1")

    sub = await page.evaluate("window.subscribed['room.a']")
    assert sub["recovered"] is False and sub["offset"] == 3
    assert await page.evaluate("window.gaps") == [
        {"channel": "room.a", "from": {"epoch": "stale-epoch", "offset": 1}, "to": {"epoch": sub["epoch"], "offset": 3}}
    ]
    assert_stream(await received(page, "room.a"), [4], [3])
    assert (await page.evaluate("window.client.positions()"))["room.a"] == {"epoch": sub["epoch"], "offset": 4}
    await page.evaluate("window.client.close()")
