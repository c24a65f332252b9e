"""Traces of an app's messages: the recent list (and the fragment it polls every 3 s), and the
waterfall of one message. Spans come from the shared span store, whichever instance recorded them."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from pushwire.console.auth import ConsoleSession
from pushwire.console.render import render
from pushwire.runtime import Runtime
from pushwire.tenants.service import NotFound
from pushwire.tracing.views import TraceFilter, load_trace, recent_summaries, waterfall


def _filter(channel: str, user: str, min_ms: str, failed: str) -> TraceFilter:
    try:
        slow = max(0.0, float(min_ms)) if min_ms.strip() else 0.0
    except ValueError:
        slow = 0.0
    return TraceFilter(
        channel=channel.strip()[:164], user=user.strip()[:128], min_ms=slow, failed=failed in ("1", "on", "true")
    )


async def _recent(runtime: Runtime, session: ConsoleSession, app_id: str, f: TraceFilter) -> dict[str, Any]:
    app = await runtime.tenancy.get_app(app_id, session.scope)  # NotFound outside the user's tenant
    rows, held = await recent_summaries(runtime.tracing.store, app_id, f)
    return {"app": app, "rows": rows, "held": held, "f": f, "ratio": runtime.settings.trace_sample_ratio}


@get("/apps/{app_id:str}/traces")
async def traces_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    session: ConsoleSession,
    app_id: str,
    channel: str = "",
    user: str = "",
    min_ms: str = "",
    failed: str = "",
) -> Response[Any]:
    return render(
        request, "traces.html", **await _recent(runtime, session, app_id, _filter(channel, user, min_ms, failed))
    )


@get("/apps/{app_id:str}/traces/live")
async def traces_live(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    session: ConsoleSession,
    app_id: str,
    channel: str = "",
    user: str = "",
    min_ms: str = "",
    failed: str = "",
) -> Response[Any]:
    return render(
        request, "_traces.html", **await _recent(runtime, session, app_id, _filter(channel, user, min_ms, failed))
    )


@get("/apps/{app_id:str}/traces/{key:str}")
async def trace_page(
    request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession, app_id: str, key: str
) -> Response[Any]:
    app = await runtime.tenancy.get_app(app_id, session.scope)
    found = await load_trace(runtime.tracing.store, app_id, key)
    if found is None:
        raise NotFound("no trace for this message (unknown, not sampled, or older than an hour)")
    trace_id, spans = found
    rows = waterfall(spans)
    total_ms = round((max(s.end_ns for s in spans) - min(s.start_ns for s in spans)) / 1e6, 3)
    return render(
        request,
        "trace.html",
        app=app,
        key=key,
        trace_id=trace_id,
        rows=rows,
        total_ms=total_ms,
        instances=sorted({s.instance for s in spans}),
        failed=any(s.error for s in spans),
        start_ns=min(s.start_ns for s in spans),
    )


handlers = [traces_page, traces_live, trace_page]
