"""Dashboard, tenants, live presence and the audit log."""

from __future__ import annotations

import re

from tests.console.conftest import PASSWORD, Console


async def test_operator_sees_every_tenant_and_creates_tenants_and_accounts(console: Console) -> None:
    b = await console.as_user("operator")
    home = await b.get("/console/")
    assert console.app_a.app_id in home.text and console.app_b.app_id in home.text
    page = await b.get("/console/tenants")
    assert page.status_code == 200 and console.tenant_a in page.text and console.tenant_b in page.text
    created = await b.post("/console/tenants", {"name": "Acme Corp"})
    assert created.status_code == 200 and "Tenant Acme Corp created" in created.text
    tenant = next(t for t in await console.runtime.tenancy.list_tenants(None) if t.name == "Acme Corp")
    email = f"admin-{tenant.tenant_id}@example.com"
    short = await b.post(
        "/console/tenants/accounts",
        {"tenant_id": tenant.tenant_id, "email": email, "password": "short", "role": "tenant_admin"},
    )
    assert short.status_code == 422 and "at least 10 characters" in short.text
    made = await b.post(
        "/console/tenants/accounts",
        {"tenant_id": tenant.tenant_id, "email": email, "password": PASSWORD, "role": "tenant_admin"},
    )
    assert made.status_code == 200 and email in made.text
    op_role = await b.post(
        "/console/tenants/accounts",
        {"tenant_id": tenant.tenant_id, "email": "o" + email, "password": PASSWORD, "role": "operator"},
    )
    assert op_role.status_code == 422  # operators are made on the server (CLI), not here
    # The operator creates an app in the new tenant; its admin then sees it.
    app = await b.post("/console/apps", {"tenant_id": tenant.tenant_id, "name": "first"})
    assert app.status_code == 200
    new_admin = console.browser()
    assert (await new_admin.login(email)).status_code == 303
    home = await new_admin.get("/console/")
    assert "first" in home.text and console.app_a.app_id not in home.text


async def test_presence_fragment_lists_online_users_and_instances(console: Console) -> None:
    b = await console.as_user("admin_a")
    app_id = console.app_a.app_id
    instance = console.runtime.settings.instance_id
    empty = await b.get(f"/console/apps/{app_id}/presence/live", hx=True)
    assert empty.status_code == 200 and "Nobody is online" in empty.text and instance in empty.text
    await console.runtime.presence.add("sess-1", app_id, "alice", instance, "ws")
    await console.runtime.presence.add("sess-2", app_id, "alice", "other-instance", "sse")
    await console.runtime.presence.add("sess-3", app_id, "bob", instance, "longpoll")
    await console.runtime.presence.add("sess-4", console.app_b.app_id, "carol", instance, "ws")
    page = await b.get(f"/console/apps/{app_id}/presence")
    assert page.status_code == 200 and 'hx-trigger="every 2s"' in page.text
    live = await b.get(f"/console/apps/{app_id}/presence/live", hx=True)
    assert live.text.lstrip().startswith('<div id="presence-live"')
    for text in ("alice", "bob", "WebSocket", "SSE", "long-poll", "other-instance", "3 connections"):
        assert text in live.text, text
    assert "carol" not in live.text
    search = await b.get(f"/console/apps/{app_id}/presence/live", hx=True, params={"q": "al"})
    assert "alice" in search.text and "bob" not in search.text
    await console.runtime.presence.remove("sess-3", app_id, "bob")
    gone = await b.get(f"/console/apps/{app_id}/presence/live", hx=True)
    assert "bob" not in gone.text and "alice" in gone.text


async def test_audit_lists_key_creation_in_scope_newest_first(console: Console) -> None:
    admin_a = await console.as_user("admin_a")
    app_id = console.app_a.app_id
    await admin_a.post(f"/console/apps/{app_id}/server-keys", {"label": "first", "scopes": "push"})
    created = await admin_a.post(f"/console/apps/{app_id}/server-keys", {"label": "second", "scopes": "push"})
    key_id = re.search(r"New server key\s*<strong class=\"mono\">(sk_\w+)</strong>", created.text).group(1)
    await admin_a.post(f"/console/apps/{app_id}/server-keys/{key_id}/revoke")
    page = await admin_a.get("/console/audit")
    assert page.status_code == 200
    actions = re.findall(r'<td class="mono">(server_key\.\w+)</td>', page.text)
    assert actions == ["server_key.revoke", "server_key.create", "server_key.create"]
    assert key_id in page.text and console.emails["admin_a"] in page.text and '"label": "second"' in page.text
    filtered = await admin_a.get(f"/console/audit?app={app_id}")
    assert key_id in filtered.text
    viewer = await console.as_user("viewer_a")
    assert key_id in (await viewer.get("/console/audit")).text
    other = await console.as_user("admin_b")
    assert key_id not in (await other.get("/console/audit")).text
    operator = await console.as_user("operator")
    assert key_id in (await operator.get("/console/audit")).text
