"""GET /console/apps/{app_id} (settings, keys, try it) and POST .../settings.

Limits are checked in the service (within the platform maxima; only operators may raise one);
a refused form comes back with the message: in the page's alert area (HTMX, the form keeps what
was typed) or, for a plain post, as the settings form again with the values typed.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post

from pushwire.console.auth import ConsoleSession
from pushwire.console.pages.common import Form, audit, page_or_fragment
from pushwire.console.render import is_hx, render
from pushwire.runtime import Runtime
from pushwire.tenants.limits import parse_limit
from pushwire.tenants.service import Invalid
from pushwire.tenants.views import SCOPES, AppLimits, AppView

LIMIT_LABELS = {
    "max_token_lifetime": "Max token lifetime (s)",
    "max_connections": "Max connections",
    "max_connections_per_user": "Max connections per user",
    "push_rate": "Push rate (messages/s)",
    "push_burst": "Push burst",
    "max_payload_bytes": "Max payload (bytes)",
    "hot_history_size": "Hot history per channel",
    "retention_days": "History retention (days)",
}


async def app_context(runtime: Runtime, session: ConsoleSession, app_id: str) -> dict[str, Any]:
    """Everything the app page shows; every lookup scoped to the user's tenant (NotFound otherwise)."""
    app = await runtime.tenancy.get_app(app_id, session.scope)
    return {
        "app": app,
        "limit_labels": LIMIT_LABELS,
        "limits": msgspec.structs.asdict(app.limits),
        "maxima": msgspec.structs.asdict(runtime.settings.limit_maxima),
        "server_keys": await runtime.tenancy.list_server_keys(app_id, session.scope),
        "client_keys": await runtime.tenancy.list_client_keys(app_id, session.scope),
        "scopes": SCOPES,
    }


@get("/apps/{app_id:str}")
async def app_page(
    request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession, app_id: str
) -> Response[Any]:
    url = request.url
    tls = url.scheme in ("https", "wss")
    # What the "Use with Pusher libraries" snippets point at: the host this page was reached on.
    where: dict[str, Any] = {
        "pusher_host": url.hostname or "localhost",
        "pusher_port": url.port or (443 if tls else 80),
        "pusher_tls": tls,
    }
    return render(request, "app.html", **await app_context(runtime, session, app_id), **where)


def _changes(before: AppView, after: AppView) -> dict[str, Any]:
    old, new = msgspec.to_builtins(before), msgspec.to_builtins(after)
    out = {k: {"from": old[k], "to": new[k]} for k in ("enabled", "allowed_origins") if old[k] != new[k]}
    for k, v in new["limits"].items():
        if old["limits"][k] != v:
            out[k] = {"from": old["limits"][k], "to": v}
    return out


@post("/apps/{app_id:str}/settings", status_code=200)
async def update_settings(
    request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession, app_id: str
) -> Response[Any]:
    before = await runtime.tenancy.get_app(app_id, session.scope)
    form = await Form.read(request)
    maxima = runtime.settings.limit_maxima
    try:
        values = {k: parse_limit(k, form.text(k), maxima) for k in LIMIT_LABELS if form.text(k)}
        limits: AppLimits = msgspec.structs.replace(before.limits, **values)
        after = await runtime.tenancy.update_app(
            app_id, session.scope, enabled=form.has("enabled"), origins=form.words("origins"), limits=limits
        )
    except Invalid as exc:
        if is_hx(request):
            raise  # the alert area shows it; the form keeps what was typed
        return _settings(request, runtime, before, form, status=422, error=str(exc))
    changes = _changes(before, after)
    if changes:
        await audit(runtime).record(
            session.email, "app.update", tenant_id=after.tenant_id, app_id=app_id, target=app_id, details=changes
        )
    notice = "Settings saved." if changes else "Nothing changed."
    return _settings(request, runtime, after, None, notice=notice)


def _settings(
    request: Request[Any, Any, Any], runtime: Runtime, app: AppView, typed: Form | None, status: int = 200, **extra: Any
) -> Response[Any]:
    """The settings fragment (or page); with `typed`, showing the refused form's values again."""
    limits: dict[str, Any] = msgspec.structs.asdict(app.limits)
    if typed is not None:
        app = msgspec.structs.replace(app, enabled=typed.has("enabled"), allowed_origins=typed.words("origins"))
        limits.update({k: typed.text(k) for k in LIMIT_LABELS if typed.text(k)})
    return page_or_fragment(
        request,
        "_settings.html",
        title="App settings",
        back=f"/console/apps/{app.app_id}",
        status=status,
        app=app,
        limits=limits,
        limit_labels=LIMIT_LABELS,
        maxima=msgspec.structs.asdict(runtime.settings.limit_maxima),
        **extra,
    )


handlers = [app_page, update_settings]
