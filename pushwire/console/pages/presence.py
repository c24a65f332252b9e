"""Live presence of an app: the page, and the fragment it polls every 2 s (users, connections, instances).

The instance table's connection counts are scoped like everything else: operators see each
instance's whole load; a tenant's users see only their own tenant's connections per instance
(another tenant's traffic is not theirs to see, not even as a total).
"""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa
from litestar import Request, Response, get

from pushwire.console.auth import ConsoleSession
from pushwire.console.render import render
from pushwire.registry.base import InstanceInfo
from pushwire.runtime import Runtime
from pushwire.storage.models import App, PresenceRoute

LIMIT = 200


async def _tenant_counts(runtime: Runtime, tenant_id: str) -> dict[str, int]:
    """Connections of one tenant's apps per instance, from the presence routes (every instance's)."""
    q = (
        sa.select(PresenceRoute.instance_id, sa.func.count())
        .join(App, App.id == PresenceRoute.app_id)
        .where(App.tenant_id == tenant_id)
        .group_by(PresenceRoute.instance_id)
    )
    async with runtime.backends.database.session() as s:
        return {instance: int(n) for instance, n in (await s.execute(q)).all()}


async def _instances(runtime: Runtime, session: ConsoleSession) -> list[InstanceInfo]:
    instances = sorted(await runtime.backends.registry.instances(), key=lambda i: i.id)
    here = runtime.settings.instance_id
    if session.is_operator:
        # The registry entry is refreshed every few seconds; this instance's own count is exact now.
        return [msgspec.structs.replace(i, connections=runtime.hub.count()) if i.id == here else i for i in instances]
    tenant = session.scope or ""
    counts = await _tenant_counts(runtime, tenant)
    # Here the hub is exact now (the routes table lags connects and disconnects a little).
    counts[here] = sum(1 for s in runtime.hub.sessions.values() if s.identity.tenant_id == tenant)
    return [msgspec.structs.replace(i, connections=counts.get(i.id, 0)) for i in instances]


async def _live(runtime: Runtime, session: ConsoleSession, app_id: str, q: str) -> dict[str, Any]:
    app = await runtime.tenancy.get_app(app_id, session.scope)  # NotFound outside the user's tenant
    users = await runtime.presence.online_users(app_id, limit=LIMIT, search=q.strip()[:128])
    instances = await _instances(runtime, session)
    return {
        "app": app,
        "users": users,
        "instances": instances,
        "q": q,
        "limit": LIMIT,
        "connections": sum(len(u.routes) for u in users),
    }


@get("/apps/{app_id:str}/presence")
async def presence_page(
    request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession, app_id: str, q: str = ""
) -> Response[Any]:
    return render(request, "presence.html", **await _live(runtime, session, app_id, q))


@get("/apps/{app_id:str}/presence/live")
async def presence_live(
    request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession, app_id: str, q: str = ""
) -> Response[Any]:
    return render(request, "_presence.html", **await _live(runtime, session, app_id, q))


handlers = [presence_page, presence_live]
