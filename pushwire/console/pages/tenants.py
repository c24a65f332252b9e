"""Operators only: GET/POST /console/tenants, POST /console/tenants/accounts (invite an admin or viewer)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from pushwire.console.auth import ConsoleSession
from pushwire.console.pages.common import Form, audit, page_or_fragment
from pushwire.console.render import render
from pushwire.runtime import Runtime
from pushwire.tenants.service import Invalid

TENANT_ROLES = ("tenant_admin", "tenant_viewer")
OPERATORS = {"operator_only": True}


async def _rows(runtime: Runtime) -> list[tuple[Any, int]]:
    tenants = await runtime.tenancy.list_tenants(None)
    apps = await runtime.tenancy.list_apps(None)
    return [(t, sum(1 for a in apps if a.tenant_id == t.tenant_id)) for t in tenants]


@get("/tenants", opt=OPERATORS)
async def tenants_page(request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession) -> Response[Any]:
    return render(request, "tenants.html", rows=await _rows(runtime), roles=TENANT_ROLES)


@post("/tenants", opt=OPERATORS, status_code=200)
async def create_tenant(request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession) -> Response[Any]:
    form = await Form.read(request)
    tenant = await runtime.tenancy.create_tenant(form.text("name"))
    await audit(runtime).record(
        session.email,
        "tenant.create",
        tenant_id=tenant.tenant_id,
        target=tenant.tenant_id,
        details={"name": tenant.name},
    )
    return page_or_fragment(
        request,
        "_tenants.html",
        title="Tenants",
        back="/console/tenants",
        rows=await _rows(runtime),
        roles=TENANT_ROLES,
        notice=f"Tenant {tenant.name} created ({tenant.tenant_id}).",
    )


@post("/tenants/accounts", opt=OPERATORS, status_code=200)
async def create_account(request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession) -> Response[Any]:
    form = await Form.read(request)
    role, tenant_id = form.text("role"), form.text("tenant_id")
    if role not in TENANT_ROLES:
        raise Invalid(f"role must be one of {', '.join(TENANT_ROLES)}")
    if not tenant_id:
        raise Invalid("choose a tenant")
    account = await runtime.accounts.create_user(form.text("email"), form.raw("password"), role, tenant_id)
    await audit(runtime).record(
        session.email,
        "account.create",
        tenant_id=tenant_id,
        target=account.email,
        details={"role": role, "user_id": account.user_id},
    )
    return page_or_fragment(
        request,
        "_notice.html",
        title="Account created",
        back="/console/tenants",
        notice=f"{account.email} can now sign in as {role.replace('_', ' ')} of {tenant_id}.",
    )


handlers = [tenants_page, create_tenant, create_account]
