"""GET /metrics: Prometheus text exposition of this instance, behind a bearer token.

Disabled (404) unless PUSHWIRE_METRICS_TOKEN is set: per-app labels name tenants' apps, so the
figures are never public by default.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get

from pushwire.errors import ApiError
from pushwire.runtime import Runtime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _authorized(request: Request[Any, Any, Any], token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # Compared as bytes in constant time; a wrong scheme still costs one comparison.
    ok = hmac.compare_digest(given.strip().encode(), token.encode())
    return ok and scheme.lower() == "bearer"


@get("/metrics", include_in_schema=False)
async def metrics(request: Request[Any, Any, Any], runtime: Runtime) -> Response[str]:
    token = runtime.settings.metrics_token
    if not token:
        raise ApiError(404, "not_found", "metrics are disabled (set PUSHWIRE_METRICS_TOKEN)")
    if not _authorized(request, token):
        raise ApiError(
            401,
            "unauthorized",
            "a valid metrics token is required (Authorization: Bearer)",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    body = await runtime.metrics.collect()
    return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
