"""Queue depth of an app: the page, and the fragment it polls every 2 s (hot history, outbox, lag, rates)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from pushwire.console.auth import ConsoleSession
from pushwire.console.render import render
from pushwire.metrics.depth import queue_view
from pushwire.metrics.probes import Probes
from pushwire.runtime import Runtime


async def _live(runtime: Runtime, probes: Probes, session: ConsoleSession, app_id: str) -> dict[str, Any]:
    app = await runtime.tenancy.get_app(app_id, session.scope)  # NotFound outside the user's tenant
    return {"app": app, "view": await queue_view(runtime, probes, app)}


@get("/apps/{app_id:str}/queues")
async def queues_page(
    request: Request[Any, Any, Any], runtime: Runtime, probes: Probes, session: ConsoleSession, app_id: str
) -> Response[Any]:
    return render(request, "queues.html", **await _live(runtime, probes, session, app_id))


@get("/apps/{app_id:str}/queues/live")
async def queues_live(
    request: Request[Any, Any, Any], runtime: Runtime, probes: Probes, session: ConsoleSession, app_id: str
) -> Response[Any]:
    return render(request, "_queues.html", **await _live(runtime, probes, session, app_id))


handlers = [queues_page, queues_live]
