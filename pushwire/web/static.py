"""/static: the browser client (static/pushwire.js) and the console's assets, served as files.

The directory is the package's (pushwire.paths): inside an installed package, the checkout's
top-level `static/` for a source checkout or an editable install. Building the router checks
that htmx is there: `pushwire run` refuses to start with a silently broken console.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

from pushwire.paths import require_htmx, static_dir


def static_directory() -> Path:
    return static_dir()


def static_files_router() -> Router:
    require_htmx()
    return create_static_files_router(
        path="/static",
        directories=[static_dir()],
        include_in_schema=False,
        # Tenants' pages may import pushwire.js cross-origin as an ES module (a CORS request):
        # the app-wide CORS config (allow_origins=["*"]) answers it.
        cache_control=CacheControlHeader(max_age=300, public=True),
    )


__all__ = ["static_directory", "static_files_router"]
