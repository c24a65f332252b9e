"""GET /console/audit: the audit log in the user's scope, newest first, optionally for one app or action."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from pushwire.console.auth import ConsoleSession
from pushwire.console.pages.common import audit
from pushwire.console.render import render
from pushwire.runtime import Runtime

LIMIT = 200
# What the console writes; the page filters by one of them.
ACTIONS = (
    "app.create",
    "app.update",
    "server_key.create",
    "server_key.rotate",
    "server_key.revoke",
    "client_key.create",
    "client_key.revoke",
    "tenant.create",
    "account.create",
    "push.test",
    "message.replay",
)


@get("/audit")
async def audit_page(
    request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession, app: str = "", action: str = ""
) -> Response[Any]:
    app_id, action = app.strip(), action.strip()
    if action not in ACTIONS:
        action = ""
    if app_id:
        await runtime.tenancy.get_app(app_id, session.scope)  # 404 for another tenant's app
    entries = await audit(runtime).entries(session.scope, app_id=app_id or None, action=action or None, limit=LIMIT)
    return render(
        request, "audit.html", entries=entries, app_filter=app_id, action_filter=action, actions=ACTIONS, limit=LIMIT
    )


handlers = [audit_page]
