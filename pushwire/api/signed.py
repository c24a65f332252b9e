"""Reading a request into a SignedRequest and authenticating it."""

from __future__ import annotations

from typing import Any

from litestar import Request

from pushwire.runtime import Runtime
from pushwire.tenants.auth import Caller, Cost, SignedRequest


def signed_request(scope: Any, body: bytes) -> SignedRequest:
    """What authentication needs of an HTTP request, read from its ASGI scope."""
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) and raw_path else scope["path"]
    client = scope.get("client")
    return SignedRequest(
        method=scope["method"],
        path=path.split("?", 1)[0],
        raw_query=scope.get("query_string", b"").decode("latin-1"),
        headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
        body=body,
        peer=client[0] if client else None,
    )


async def signed_caller(
    request: Request[Any, Any, Any], runtime: Runtime, scope: str | None, cost: Cost = 0
) -> tuple[Caller, bytes]:
    """Authenticate the request for `scope` (and take `cost` from the app's push rate in the same
    cache round trip as the nonce); returns the caller and the raw body it signed."""
    body = await request.body()
    return await runtime.auth.authenticate(signed_request(request.scope, body), scope, cost), body
