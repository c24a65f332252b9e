"""The console in headless Chromium: sign in, apps and keys, live presence, and what a viewer cannot do.

These drive the real pages (htmx from static/vendor, console.js, the CSP) against a live server;
the route tests in tests/console/ cover every page and refusal without a browser.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from playwright.async_api import Page, expect

from pushwire.sdk import AsyncServerClient
from tests.live import LiveServer
from tests.services import unique

pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSWORD = "correct horse battery staple"


async def sign_in(page: Page, live: LiveServer, role: str = "tenant_admin") -> str:
    email = f"{unique(role + '-')}@example.com"
    tenant = None if role == "operator" else live.tenant_id
    await live.runtime.accounts.create_user(email, PASSWORD, role, tenant)
    await page.goto(f"{live.http}/console/login")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("header .who")).to_contain_text(email)
    return email


async def test_sign_in_create_app_and_key_secret_shown_once(live: LiveServer, page: Page) -> None:
    await sign_in(page, live)
    name = unique("web-")
    form = page.locator("form[hx-post='/console/apps']")
    await form.locator("input[name=name]").fill(name)
    await form.locator("button[type=submit]").click()
    created = page.locator("#app-created")
    await expect(created).to_contain_text(f"{name}")
    app_secret = await created.locator("#app-server-secret").inner_text()
    assert len(app_secret) >= 32
    await created.get_by_role("link", name="Open the app →").click()
    await expect(page.locator("h1")).to_contain_text(name)
    assert app_secret not in await page.content()  # shown once, at creation only
    app_id = page.url.rstrip("/").rsplit("/", 1)[1]

    await page.locator("#server-keys summary").click()
    await page.locator("#server-keys input[name=label]").fill("browser")
    await page.locator("#server-keys button", has_text="Create key").click()
    secret_box = page.locator("#server-keys .created-secret code")
    await expect(secret_box).to_be_visible()
    secret = await secret_box.inner_text()
    key_id = (await secret_box.get_attribute("id") or "").removeprefix("server-secret-")
    assert key_id and len(secret) >= 32

    # The key works for a signed push, and reloading the page never shows the secret again.
    async with AsyncServerClient(live.http, key_id, secret) as client:
        result = await client.push(channels=["room.browser"], event="hello", data={"n": 1})
    assert result["deliveries"][0]["offset"] == 1
    await page.reload()
    await expect(page.locator("#server-keys")).to_contain_text(key_id)
    assert secret not in await page.content()
    assert app_id in page.url


async def answer_pings(ws: websockets.ClientConnection) -> None:
    """The server closes a client silent for 2 × heartbeat (1 s here): answer its pings."""
    async for raw in ws:
        if json.loads(raw).get("type") == "ping":
            await ws.send('{"type": "pong"}')


async def test_live_presence_shows_a_client_come_and_go(live: LiveServer, page: Page) -> None:
    await sign_in(page, live)
    await page.goto(f"{live.http}/console/apps/{live.app_id}/presence")
    user = unique("visitor-")
    await expect(page.locator("body")).not_to_contain_text(user)
    async with websockets.connect(live.ws_url(live.token(user))) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome"
        answering = asyncio.create_task(answer_pings(ws))
        # The page polls its fragment: the user appears without a reload.
        row = page.locator("table.presence tr", has_text=user)
        await expect(row).to_contain_text("WebSocket", timeout=10_000)
        await expect(row).to_contain_text(live.runtime.settings.instance_id)
        answering.cancel()
    await expect(page.locator("body")).not_to_contain_text(user, timeout=10_000)


async def test_viewer_sees_no_forms_and_is_refused_a_change(live: LiveServer, page: Page) -> None:
    await sign_in(page, live, role="tenant_viewer")
    await expect(page.locator("form[hx-post='/console/apps']")).to_have_count(0)
    await page.goto(f"{live.http}/console/apps/{live.app_id}")
    await expect(page.locator("h1")).to_be_visible()
    await expect(page.locator("#server-keys form")).to_have_count(0)
    await expect(page.locator("#try-it")).to_have_count(0)
    # Forging the request from the page (with a valid CSRF token) is refused by the server too.
    status = await page.evaluate(
        """async (url) => {
            const csrf = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];
            const r = await fetch(url, {method: 'POST', headers: {'X-CSRF-Token': csrf, 'HX-Request': 'true',
              'Content-Type': 'application/x-www-form-urlencoded'}, body: 'label=evil&scopes=push'});
            return r.status;
        }""",
        f"{live.http}/console/apps/{live.app_id}/server-keys",
    )
    assert status == 403
    keys = await live.runtime.tenancy.list_server_keys(live.app_id, None)
    assert all(k.label != "evil" for k in keys)


async def test_test_push_from_the_console_and_its_trace_waterfall(live: LiveServer, page: Page) -> None:
    await sign_in(page, live)
    user = unique("traced-")
    async with websockets.connect(live.ws_url(live.token(user))) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        await page.goto(f"{live.http}/console/apps/{live.app_id}")
        form = page.locator("#try-it form[hx-post$='/try/push']")
        await form.locator("input[name=target]").fill(user)
        await form.locator("button[type=submit]").click()
        result = page.locator("#try-push-result")
        await expect(result).to_contain_text("stored")
        message_id = (await result.locator("strong.mono").inner_text()).strip()
        # The connected client gets it, and acknowledges it (the ack closes the trace).
        async with asyncio.timeout(10):
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "ping":
                    await ws.send('{"type": "pong"}')
                elif frame["type"] == "message":
                    break
        assert frame["id"] == message_id and frame["event"] == "console.test"
        await ws.send(json.dumps({"type": "ack", "channel": frame["channel"], "offset": frame["offset"]}))
        await asyncio.sleep(0.5)  # the span store flushes every 200 ms
        await result.get_by_role("link", name="Trace of this message").click()
        await expect(page.locator("h1")).to_contain_text(message_id)
        waterfall = page.locator("table.waterfall")
        for name in ("push", "db.commit", "outbox.relay", "router", "hub.deliver", "client.ack"):
            await expect(waterfall.locator("summary", has_text=name).first).to_be_visible(timeout=10_000)
        await expect(waterfall.locator("svg rect").first).to_be_attached()
        await expect(waterfall).to_contain_text(user)


async def _next_message(ws: websockets.ClientConnection) -> dict[str, object]:
    async with asyncio.timeout(10):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "ping":
                await ws.send('{"type": "pong"}')
            elif frame["type"] == "message":
                return frame  # type: ignore[no-any-return]


async def test_replay_a_message_from_the_console_and_the_client_receives_it(live: LiveServer, page: Page) -> None:
    await sign_in(page, live)
    user = unique("reader-")
    async with live.pusher() as pusher:
        original = await pusher.push(users=[user], event="invoice.paid", data={"invoice": "INV-7", "amount": 12.5})
    async with websockets.connect(live.ws_url(live.token(user))) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        first = await _next_message(ws)  # the unread message is replayed on connect
        assert first["id"] == original["id"]
        await page.goto(f"{live.http}/console/apps/{live.app_id}/messages?user={user}")
        await page.get_by_role("link", name=original["id"]).first.click()
        await expect(page.locator("h1")).to_contain_text(original["id"])
        await page.get_by_role("button", name="Replay").click()
        result = page.locator("#replay-result")
        await expect(result).to_contain_text("Replayed 1 delivery")
        replayed = await _next_message(ws)
    assert replayed["id"] != original["id"]
    assert replayed["channel"] == first["channel"] and replayed["offset"] == first["offset"] + 1  # type: ignore[operator]
    assert replayed["event"] == "invoice.paid" and replayed["data"] == {"invoice": "INV-7", "amount": 12.5}
    await expect(result).to_contain_text(str(replayed["id"]))
