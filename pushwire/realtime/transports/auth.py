"""Token and Origin checks shared by every transport, before any connection state exists."""

from __future__ import annotations

from collections.abc import Mapping

from pushwire.errors import ApiError
from pushwire.realtime.tokens import ClientIdentity, ClientTokenVerifier, TokenError


def bearer_token(query: Mapping[str, str], headers: Mapping[str, str]) -> str:
    token = query.get("token", "")
    if token:
        return token
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


async def identify(
    verifier: ClientTokenVerifier, query: Mapping[str, str], headers: Mapping[str, str]
) -> ClientIdentity:
    token = bearer_token(query, headers)
    if not token:
        raise ApiError(401, "unauthorized", "a client token is required (?token= or Authorization: Bearer)")
    try:
        return await verifier.verify(token)
    except TokenError as exc:
        raise ApiError(401, "unauthorized", exc.reason) from None


def origin_allowed(identity: ClientIdentity, origin: str | None) -> bool:
    """Browsers always send Origin; servers and mobile clients do not and are not subject to the list."""
    if origin is None or not identity.allowed_origins:
        return True
    return origin.strip().rstrip("/").lower() in identity.allowed_origins
