"""A running app with the console mounted, per backend set (SQLite + memory, MariaDB + Redis).

The app is create_app's, with the console and /static routers registered on it (as create_app
mounts them), so the console runs with the real dependencies, CORS and error handling.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar

from pushwire.app import create_app
from pushwire.console import console_router
from pushwire.runtime import Runtime
from pushwire.settings import load_settings
from pushwire.tenants.views import AppCreated
from pushwire.web.static import static_files_router
from tests.live import backend_env
from tests.services import unique

PASSWORD = "correct horse battery staple"
BASE = "http://pushwire.test"
_CSRF = re.compile(r'name="_csrf" value="([^"]+)"')


def mount_console(app: Litestar) -> Litestar:
    """What create_app does once it mounts the console; harmless if it already does."""
    paths = {route.path for route in app.routes}
    if "/console/login" not in paths:
        app.register(console_router())
    if not any(p.startswith("/static") for p in paths):
        app.register(static_files_router())
    return app


class Browser:
    """An httpx client with a cookie jar, posting like the console's forms (plain or HTMX)."""

    def __init__(self, app: Litestar) -> None:
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 40000)), base_url=BASE
        )
        self.csrf = ""

    async def get(self, path: str, *, hx: bool = False, **kwargs: Any) -> httpx.Response:
        headers = {"HX-Request": "true"} if hx else {}
        response = await self.http.get(path, headers=headers, **kwargs)
        if m := _CSRF.search(response.text):
            self.csrf = m.group(1)
        return response

    async def post(
        self, path: str, data: dict[str, Any] | None = None, *, hx: bool = True, csrf: str | None = None
    ) -> httpx.Response:
        """HTMX posts send the token in X-CSRF-Token (hx-headers); plain posts in the `_csrf` field."""
        token = self.csrf if csrf is None else csrf
        data = dict(data or {})
        headers = {}
        if hx:
            headers["HX-Request"] = "true"
            if token:
                headers["X-CSRF-Token"] = token
        elif token:
            data["_csrf"] = token
        return await self.http.post(path, data=data, headers=headers)

    async def login(self, email: str, password: str = PASSWORD) -> httpx.Response:
        await self.get("/console/login")
        response = await self.post("/console/login", {"email": email, "password": password}, hx=False)
        if response.status_code == 303:
            await self.get("/console/")  # picks up the session's CSRF token
        return response

    async def close(self) -> None:
        await self.http.aclose()


@dataclass
class Console:
    app: Litestar
    runtime: Runtime
    tenant_a: str
    tenant_b: str
    app_a: AppCreated
    app_b: AppCreated
    emails: dict[str, str]
    _browsers: list[Browser] = field(default_factory=list)

    def browser(self) -> Browser:
        b = Browser(self.app)
        self._browsers.append(b)
        return b

    async def as_user(self, who: str) -> Browser:
        """A browser signed in as operator, admin_a, viewer_a or admin_b."""
        b = self.browser()
        response = await b.login(self.emails[who])
        assert response.status_code == 303, response.text
        return b


@pytest.fixture(params=["single", "mariadb+redis"])
async def console(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Console]:
    env = await backend_env(request, tmp_path)
    app = mount_console(create_app(load_settings(env)))
    runtime: Runtime = app.state.runtime
    await runtime.start()  # in the test's loop, as tests/api/conftest.py explains
    c: Console | None = None
    try:
        ta = await runtime.tenancy.create_tenant(unique("tenant-a-"))
        tb = await runtime.tenancy.create_tenant(unique("tenant-b-"))
        app_a = await runtime.tenancy.create_app(ta.tenant_id, "web-a")
        app_b = await runtime.tenancy.create_app(tb.tenant_id, "web-b")
        emails = {who: f"{unique(who + '-')}@example.com" for who in ("operator", "admin_a", "viewer_a", "admin_b")}
        await runtime.accounts.create_user(emails["operator"], PASSWORD, "operator", None)
        await runtime.accounts.create_user(emails["admin_a"], PASSWORD, "tenant_admin", ta.tenant_id)
        await runtime.accounts.create_user(emails["viewer_a"], PASSWORD, "tenant_viewer", ta.tenant_id)
        await runtime.accounts.create_user(emails["admin_b"], PASSWORD, "tenant_admin", tb.tenant_id)
        c = Console(
            app=app,
            runtime=runtime,
            tenant_a=ta.tenant_id,
            tenant_b=tb.tenant_id,
            app_a=app_a,
            app_b=app_b,
            emails=emails,
        )
        yield c
    finally:
        for b in c._browsers if c else []:
            await b.close()
        await runtime.stop()
