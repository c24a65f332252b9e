"""Browser tests: Debian's headless Chromium runs static/pushwire.js against a live server.

The page (a copy of static/pushwire.js and a test page) is served by a tiny `http.server` on its
own port, so the client talks to the Pushwire server cross-origin, as on a tenant's site.

Event loops: one async Playwright and Chromium serve the whole session, and Playwright objects
belong to the loop that made them. So these tests run in the session loop, and `live` is
defined here with `loop_scope="session"` (the uvicorn server must run in the test's loop); it
builds the same two backend sets as tests/realtime/conftest.py, with a short heartbeat so that
ping/pong is exercised within a test.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from tests.live import LiveServer, backend_env, live_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
HEARTBEAT = 1

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>pushwire.js test</title></head>
<body>
<script type="module">
import { PushwireClient } from "./pushwire.js";
window.PushwireClient = PushwireClient;
window.pushwireLoaded = true;
</script>
</body></html>
"""


@pytest_asyncio.fixture(params=["single", "mariadb+redis"], loop_scope="session")
async def live(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LiveServer]:
    env = await backend_env(request, tmp_path, PUSHWIRE_HEARTBEAT=str(HEARTBEAT))
    async with live_server(env) as server:
        yield server


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium() -> AsyncIterator[Browser]:
    """One headless Chromium for the session (`playwright install` cannot download one here)."""
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def page_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """http://127.0.0.1:<port> serving index.html and a copy of static/pushwire.js."""
    root = tmp_path_factory.mktemp("www")
    shutil.copy(REPO / "static" / "pushwire.js", root / "pushwire.js")
    (root / "index.html").write_text(PAGE)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, name="static-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest_asyncio.fixture(loop_scope="session")
async def page(chromium: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh browser context and page (not navigated yet: tests may add init scripts first).

    The page's console output is printed when the test fails, to explain what the client did.
    """
    context = await chromium.new_context()
    pg = await context.new_page()
    console: list[str] = []
    pg.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
    pg.on("pageerror", lambda e: console.append(f"[pageerror] {e}"))
    try:
        yield pg
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed and console:
            print("\n--- browser console ---\n" + "\n".join(console))
        await context.close()
