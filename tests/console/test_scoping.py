"""Tenant isolation by URL guessing, the read-only viewer, and operator-only pages."""

from __future__ import annotations

import re
import time

from pushwire.realtime.session import Session
from pushwire.realtime.tokens import ClientIdentity
from pushwire.registry.base import InstanceInfo
from pushwire.registry.local import LocalRegistry
from tests.console.conftest import Console
from tests.services import unique


async def test_tenant_admin_gets_404_for_another_tenants_app(console: Console) -> None:
    b = await console.as_user("admin_a")
    theirs = console.app_b.app_id
    key_b, kid_b = console.app_b.server_key.key_id, console.app_b.client_key.kid
    home = await b.get("/console/")
    assert console.app_a.app_id in home.text and theirs not in home.text
    for path, hx in (
        (f"/console/apps/{theirs}", False),
        (f"/console/apps/{theirs}/presence", False),
        (f"/console/apps/{theirs}/presence/live", True),
        (f"/console/apps/{theirs}/server-keys", True),
        (f"/console/apps/{theirs}/client-keys", True),
        (f"/console/audit?app={theirs}", False),
        ("/console/apps/999999999", False),
    ):
        response = await b.get(path, hx=hx)
        assert response.status_code == 404, path
        assert "There is no such object" in response.text and key_b not in response.text
    posts = [
        (f"/console/apps/{theirs}/settings", {"origins": ""}),
        (f"/console/apps/{theirs}/server-keys", {"scopes": "push"}),
        (f"/console/apps/{theirs}/server-keys/{key_b}/revoke", {}),
        (f"/console/apps/{theirs}/server-keys/{key_b}/rotate", {}),
        # B's key through A's own app: still not found.
        (f"/console/apps/{console.app_a.app_id}/server-keys/{key_b}/revoke", {}),
        (f"/console/apps/{theirs}/client-keys", {"kind": "hs256"}),
        (f"/console/apps/{theirs}/client-keys/{kid_b}/revoke", {}),
        (f"/console/apps/{console.app_a.app_id}/client-keys/{kid_b}/revoke", {}),
        (f"/console/apps/{theirs}/try/token", {"user_id": "u1"}),
        (f"/console/apps/{theirs}/try/push", {"target": "u1"}),
    ]
    for path, form in posts:
        assert (await b.post(path, form)).status_code == 404, path
    assert all(k.revoked_at is None for k in await console.runtime.tenancy.list_server_keys(theirs, None))
    assert len(await console.runtime.tenancy.list_server_keys(theirs, None)) == 1
    assert all(k.revoked_at is None for k in await console.runtime.tenancy.list_client_keys(theirs, None))
    assert (await console.runtime.history.read(theirs, "user.u1", 0, 10)).messages == []


async def test_operator_only_pages(console: Console) -> None:
    admin = await console.as_user("admin_a")
    assert (await admin.get("/console/tenants")).status_code == 403
    assert (await admin.post("/console/tenants", {"name": "sneaky"})).status_code == 403
    assert (
        await admin.post(
            "/console/tenants/accounts",
            {
                "tenant_id": console.tenant_b,
                "email": "x@example.com",
                "password": "long enough pass",
                "role": "tenant_admin",
            },
        )
    ).status_code == 403
    assert "sneaky" not in [t.name for t in await console.runtime.tenancy.list_tenants(None)]


async def test_viewer_sees_no_forms_and_cannot_change_anything(console: Console) -> None:
    b = await console.as_user("viewer_a")
    app_id = console.app_a.app_id
    for path in ("/console/", f"/console/apps/{app_id}", f"/console/apps/{app_id}/presence", "/console/audit"):
        page = await b.get(path)
        assert page.status_code == 200, path
        assert "hx-post" not in page.text and page.text.count("<form") == page.text.count(
            'action="/console/logout"'
        ) + (1 if path.endswith(("/presence", "/audit")) else 0)  # the logout form (and GET search forms) only
        assert 'method="post"' not in page.text.replace('method="post" action="/console/logout"', "")
    key = console.app_a.server_key.key_id
    posts = [
        ("/console/apps", {"name": "viewer-app"}),
        (f"/console/apps/{app_id}/settings", {"origins": "https://evil.example.com"}),
        (f"/console/apps/{app_id}/server-keys", {"scopes": "push"}),
        (f"/console/apps/{app_id}/server-keys/{key}/revoke", {}),
        (f"/console/apps/{app_id}/server-keys/{key}/rotate", {}),
        (f"/console/apps/{app_id}/client-keys", {"kind": "hs256"}),
        (f"/console/apps/{app_id}/try/token", {"user_id": "u1"}),
        (f"/console/apps/{app_id}/try/push", {"target": "u1"}),
    ]
    for path, form in posts:
        for hx in (True, False):
            response = await b.post(path, form, hx=hx)
            assert response.status_code == 403, path
            assert "read-only" in response.text
    app = await console.runtime.tenancy.get_app(app_id, None)
    assert app.enabled and app.allowed_origins == []
    assert [k.revoked_at for k in await console.runtime.tenancy.list_server_keys(app_id, None)] == [None]
    assert len(await console.runtime.tenancy.list_client_keys(app_id, None)) == 1
    assert [a.name for a in await console.runtime.tenancy.list_apps(console.tenant_a)] == ["web-a"]
    # Viewers may still sign out.
    assert (await b.post("/console/logout", hx=False)).status_code == 303


class _Transport:
    kind = "ws"

    async def send_frames(self, frames: list[str]) -> None:
        return None

    async def close(self, code: int, reason: str) -> None:
        return None


def _session(app_id: str, tenant_id: str, n: int) -> Session:
    identity = ClientIdentity(
        app_id=app_id,
        tenant_id=tenant_id,
        user_id=f"user-{n}",
        channels=(),
        info=None,
        expires_at=time.time() + 600,
        max_connections=100,
        max_connections_per_user=100,
        allowed_origins=(),
    )
    return Session(unique("sess-"), identity, _Transport())


def _instance_counts(html: str) -> dict[str, int]:
    """Instance id -> the Connections cell of the presence page's instance table."""
    rows = re.findall(r'<tr><td class="mono">([^<]+)</td>.*?<td>(\d+)</td></tr>', html, re.S)
    return {instance: int(count) for instance, count in rows}


async def test_presence_instance_counts_are_only_the_tenants_own(console: Console) -> None:
    runtime = console.runtime
    here = runtime.settings.instance_id
    other_id = unique("pw-other-")
    other = LocalRegistry()  # a second instance in the same registry, with 50 connections of its own
    await other.start()
    await other.register(InstanceInfo(other_id, "10.0.0.2:8000", "test", "2026-01-01T00:00:00Z", 50), ttl=30)
    app_a, app_b = console.app_a.app_id, console.app_b.app_id
    # Here: 1 connection of tenant A, 3 of tenant B. There: 2 of A, 4 of B (presence routes).
    local = [_session(app_a, console.tenant_a, 0)] + [_session(app_b, console.tenant_b, n) for n in range(3)]
    for s in local:
        runtime.hub.attach(s)
    try:
        for n in range(2):
            await runtime.presence.add(unique("r-"), app_a, f"a{n}", other_id, "ws")
        for n in range(4):
            await runtime.presence.add(unique("r-"), app_b, f"b{n}", other_id, "sse")
        for who in ("admin_a", "viewer_a"):
            b = await console.as_user(who)
            for path in (f"/console/apps/{app_a}/presence", f"/console/apps/{app_a}/presence/live"):
                page = await b.get(path, hx=path.endswith("/live"))
                assert page.status_code == 200
                assert _instance_counts(page.text) == {here: 1, other_id: 2}, (who, path)
        admin_b = await console.as_user("admin_b")
        page = await admin_b.get(f"/console/apps/{app_b}/presence")
        assert _instance_counts(page.text) == {here: 3, other_id: 4}
        # Operators see each instance's whole load: this one's hub, the other's registry figure.
        operator = await console.as_user("operator")
        page = await operator.get(f"/console/apps/{app_a}/presence")
        assert _instance_counts(page.text) == {here: runtime.hub.count(), other_id: 50}
        assert runtime.hub.count() >= 4
    finally:
        for s in local:
            runtime.hub.detach(s)
        await other.close()
        await runtime.presence.remove_instance(other_id)
