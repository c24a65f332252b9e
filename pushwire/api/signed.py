"""Reading a Litestar request into a SignedRequest and authenticating it."""

from __future__ import annotations

from typing import Any

from litestar import Request

from pushwire.runtime import Runtime
from pushwire.tenants.auth import Caller, Cost, SignedRequest


async def signed_caller(
    request: Request[Any, Any, Any], runtime: Runtime, scope: str | None, cost: Cost = 0
) -> tuple[Caller, bytes]:
    """Authenticate the request for `scope` (and take `cost` from the app's push rate in the same
    cache round trip as the nonce); returns the caller and the raw body it signed."""
    body = await request.body()
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) and raw_path else request.scope["path"]
    signed = SignedRequest(
        method=request.method,
        path=path.split("?", 1)[0],
        raw_query=request.scope.get("query_string", b"").decode("latin-1"),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        peer=request.client.host if request.client else None,
    )
    return await runtime.auth.authenticate(signed, scope, cost), body
