"""static/pushwire.js is served by the app, CORS-enabled (no browser needed)."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.testing import TestClient

from pushwire.web.static import static_files_router

REPO = Path(__file__).resolve().parent.parent


def test_static_router_serves_the_client() -> None:
    """pushwire.web.static.static_files_router() serves static/pushwire.js, CORS-enabled by the
    app-wide config, so tenants' pages can import it cross-origin."""
    app = Litestar(route_handlers=[static_files_router()], cors_config=CORSConfig(allow_origins=["*"]))
    with TestClient(app) as client:
        res = client.get("/static/pushwire.js", headers={"Origin": "https://tenant.example"})
    assert res.status_code == 200
    assert res.headers["content-type"].split(";")[0] in {"text/javascript", "application/javascript"}
    assert res.headers["access-control-allow-origin"] == "*"
    assert res.content == (REPO / "static" / "pushwire.js").read_bytes()
