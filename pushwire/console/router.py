"""The console's routes under /console, with the session/CSRF/role guard and HTML error pages."""

from __future__ import annotations

from importlib.resources import files

from litestar import Response, Router, get
from litestar.di import Provide

from pushwire.console.auth import console_guard, provide_session
from pushwire.console.errors import EXCEPTION_HANDLERS
from pushwire.console.pages import (
    apps,
    audit,
    dashboard,
    keys,
    login,
    messages,
    presence,
    queues,
    tenants,
    traces,
    tryit,
)

# Kept beside the templates so it ships in the package (package-data covers console/templates/).
_CONSOLE_JS = files("pushwire.console").joinpath("templates/console.js").read_text(encoding="utf-8")


@get("/console.js", opt={"public": True}, include_in_schema=False)
async def console_js() -> Response[str]:
    return Response(
        _CONSOLE_JS,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


def console_router() -> Router:
    return Router(
        path="/console",
        route_handlers=[
            console_js,
            *login.handlers,
            *dashboard.handlers,
            *tenants.handlers,
            *apps.handlers,
            *keys.handlers,
            *tryit.handlers,
            *presence.handlers,
            *queues.handlers,
            *traces.handlers,
            *messages.handlers,
            *audit.handlers,
        ],
        guards=[console_guard],
        dependencies={"session": Provide(provide_session)},
        exception_handlers=EXCEPTION_HANDLERS,
        include_in_schema=False,
    )
