"""/static: the browser client (static/pushwire.js) and the console's assets, served as files.

The directory is the repository's `static/` found from the package location (a source checkout
or an editable install), else `static/` under the working directory (the Docker image and
`make run` start in the project root).
"""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router


def static_directory() -> Path:
    beside_package = Path(__file__).resolve().parents[2] / "static"
    if beside_package.is_dir():
        return beside_package
    return Path.cwd() / "static"


def static_files_router() -> Router:
    return create_static_files_router(
        path="/static",
        directories=[static_directory()],
        include_in_schema=False,
        # Tenants' pages may import pushwire.js cross-origin as an ES module (a CORS request):
        # the app-wide CORS config (allow_origins=["*"]) answers it.
        cache_control=CacheControlHeader(max_age=300, public=True),
    )


__all__ = ["static_directory", "static_files_router"]
