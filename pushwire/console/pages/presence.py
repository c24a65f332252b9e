"""Live presence of an app: the page, and the fragment it polls every 2 s (users, connections, instances)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get

from pushwire.console.auth import ConsoleSession
from pushwire.console.render import render
from pushwire.runtime import Runtime

LIMIT = 200


async def _live(runtime: Runtime, session: ConsoleSession, app_id: str, q: str) -> dict[str, Any]:
    app = await runtime.tenancy.get_app(app_id, session.scope)  # NotFound outside the user's tenant
    users = await runtime.presence.online_users(app_id, limit=LIMIT, search=q.strip()[:128])
    instances = sorted(await runtime.backends.registry.instances(), key=lambda i: i.id)
    # The registry entry is refreshed every few seconds; this instance's own count is exact now.
    here = runtime.settings.instance_id
    instances = [msgspec.structs.replace(i, connections=runtime.hub.count()) if i.id == here else i for i in instances]
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
