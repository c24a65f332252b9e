"""Regenerate the console screenshots in docs/img/ (`make screenshots`).

Starts a single-node server on a temporary SQLite database, fills it with a tenant, an app, a few
connected users and traffic, then photographs the pages with Debian's headless Chromium.
Not part of the test run: the pictures are committed, the README shows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import tempfile
from pathlib import Path

import uvicorn
import websockets
from playwright.async_api import Page, async_playwright

from pushwire.app import create_app
from pushwire.cli.tenancy import mint_token
from pushwire.runtime import Runtime
from pushwire.sdk import AsyncServerClient
from pushwire.settings import load_settings
from pushwire.storage.migrate import upgrade
from pushwire.tenants.views import AppLimits

OUT = Path(__file__).resolve().parents[1] / "docs" / "img"
EMAIL, PASSWORD = "operator@example.com", "screenshots-password"
USERS = ["ada", "grace", "linus", "margaret", "ken"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _client(url: str, stop: asyncio.Event) -> None:
    async with websockets.connect(url) as ws:

        async def pong() -> None:
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("type") == "ping":
                    await ws.send('{"type": "pong"}')
                elif frame.get("type") == "message" and frame["channel"].startswith("user."):
                    # Acknowledged like a real app's client would, so traces end with client.ack.
                    await ws.send(json.dumps({"type": "ack", "channel": frame["channel"], "offset": frame["offset"]}))

        task = asyncio.create_task(pong())
        await ws.send(json.dumps({"type": "subscribe", "channel": "room.lobby"}))
        await stop.wait()
        task.cancel()


async def _shot(page: Page, url: str, name: str, wait_for: str | None = None) -> None:
    await page.goto(url)
    if wait_for:
        await page.wait_for_selector(wait_for, timeout=15_000)
    await page.wait_for_timeout(2_500)  # one live refresh, so fragments and sparklines have data
    await page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
    print(f"docs/img/{name}.png")


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    db = f"sqlite+aiosqlite:///{tmp}/shots.db"
    await asyncio.to_thread(upgrade, db)
    app = create_app(
        load_settings(
            {
                "PUSHWIRE_DATABASE_URL": db,
                "PUSHWIRE_SECRET_KEY": "screenshots-secret-key-0123",
                "PUSHWIRE_TRACE_SAMPLE_RATIO": "1",
            }
        )
    )
    port = _port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, ws="websockets-sansio", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    runtime: Runtime = app.state.runtime
    stop = asyncio.Event()
    try:
        tenant = await runtime.tenancy.create_tenant("acme")
        created = await runtime.tenancy.create_app(
            tenant.tenant_id, "chat", ["https://chat.acme.example"], AppLimits(push_rate=10_000, push_burst=10_000)
        )
        await runtime.tenancy.create_app(tenant.tenant_id, "dashboards")
        await runtime.accounts.create_user(EMAIL, PASSWORD, "operator", None)
        key, secret = created.client_key.kid, created.client_key.secret or ""
        clients = [  # noqa: F841 - held so the client tasks are not garbage-collected
            asyncio.create_task(
                _client(
                    f"ws://127.0.0.1:{port}/api/v1/ws?token="
                    + mint_token(created.app_id, u, key, secret, 3600, ["room.*"]),
                    stop,
                )
            )
            for u in USERS
        ]
        await asyncio.sleep(1)
        async with AsyncServerClient(base, created.server_key.key_id, created.server_key.secret or "") as push:
            for i in range(40):
                await push.push(
                    channels=["room.lobby"], event="chat", data={"from": USERS[i % 5], "text": f"hello #{i}"}
                )
                await push.push(users=[USERS[i % 5]], event="notice", data={"unread": i})
                await asyncio.sleep(0.05)
            last = await push.push(users=["ada"], event="invoice.paid", data={"invoice": "INV-1042", "amount": 129.5})
        message_id = last["id"]
        await asyncio.sleep(1.5)  # traces flush, the sampler takes a few samples

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            await page.goto(f"{base}/console/login")
            await page.fill("input[name=email]", EMAIL)
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_selector("header .who")
            a = created.app_id
            await _shot(page, f"{base}/console/", "dashboard")
            await _shot(page, f"{base}/console/apps/{a}/presence", "presence", "table.presence")
            await _shot(page, f"{base}/console/apps/{a}/queues", "queue-depth", "svg")
            await _shot(page, f"{base}/console/apps/{a}/traces", "traces")
            await _shot(page, f"{base}/console/apps/{a}/traces/{message_id}", "trace-waterfall", "svg")
            await page.goto(f"{base}/console/apps/{a}/messages/{message_id}")
            await page.get_by_role("button", name="Replay").click()
            await page.wait_for_selector("#replay-result .replayed")
            await page.screenshot(path=str(OUT / "replay.png"), full_page=True)
            print("docs/img/replay.png")
            await _shot(page, f"{base}/console/apps/{a}/messages", "messages")
            await _shot(page, f"{base}/console/audit", "audit-log")
            await browser.close()
    finally:
        stop.set()
        await asyncio.sleep(0.2)
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, 15)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
