"""GET /console/ (tenants and their apps in the user's scope) and POST /console/apps (create an app)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from pushwire.console.auth import ConsoleSession
from pushwire.console.pages.common import Form, audit, page_or_fragment
from pushwire.console.render import render
from pushwire.runtime import Runtime
from pushwire.tenants.service import Invalid


@get("/")
async def dashboard(request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession) -> Response[Any]:
    tenants = await runtime.tenancy.list_tenants(session.scope)
    apps = await runtime.tenancy.list_apps(session.scope)
    groups = [(t, [a for a in apps if a.tenant_id == t.tenant_id]) for t in tenants]
    return render(request, "dashboard.html", groups=groups, tenants=tenants)


@post("/apps", status_code=200)
async def create_app(request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession) -> Response[Any]:
    form = await Form.read(request)
    # Tenant admins create in their own tenant whatever the form says; operators choose.
    tenant_id = form.text("tenant_id") if session.is_operator else session.scope or ""
    if not tenant_id:
        raise Invalid("choose a tenant")
    created = await runtime.tenancy.create_app(tenant_id, form.text("name"), form.words("origins"))
    await audit(runtime).record(
        session.email,
        "app.create",
        tenant_id=tenant_id,
        app_id=created.app_id,
        target=created.app_id,
        details={
            "name": form.text("name"),
            "server_key": created.server_key.key_id,
            "client_key": created.client_key.kid,
        },
    )
    return page_or_fragment(
        request, "_app_created.html", title="App created", back="/console/", created=created, name=form.text("name")
    )


handlers = [dashboard, create_app]
