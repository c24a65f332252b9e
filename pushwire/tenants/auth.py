"""Verification of signed server-API requests, in the spec's order, with its error codes.

Key rows are read on every request (a primary-key lookup) so a revocation takes effect on the
next request on every instance; nonces go through the shared cache so a replay is caught
whichever instance it reaches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import msgspec
import sqlalchemy as sa

from pushwire.cache.base import Cache
from pushwire.errors import ApiError
from pushwire.names import NONCE_RE
from pushwire.storage.database import Database
from pushwire.storage.dialect import table_of
from pushwire.storage.models import App, ServerKey, Tenant
from pushwire.tenants import signing
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.ip_allow import Network, client_ip, ip_allowed
from pushwire.tenants.service import app_view
from pushwire.tenants.views import AppView


class Caller(msgspec.Struct, frozen=True):
    key_id: str
    app: AppView
    scopes: tuple[str, ...]
    is_operator: bool = False

    @property
    def app_id(self) -> str:
        return self.app.app_id


class SignedRequest(msgspec.Struct, frozen=True):
    method: str
    path: str
    raw_query: str
    headers: Mapping[str, str]
    body: bytes
    peer: str | None


def _refuse(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, code, message)


class ServerAuthenticator:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        cache: Cache,
        trusted_proxies: Sequence[Network],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.box = box
        self.cache = cache
        self.trusted = tuple(trusted_proxies)
        self.clock = clock

    async def authenticate(self, req: SignedRequest, scope: str | None) -> Caller:
        h = req.headers
        key_id = h.get(signing.HEADER_KEY.lower(), "")
        row = await self._key(key_id) if key_id else None
        if row is None:
            raise _refuse(401, "unknown_key", "unknown or revoked key")
        key, app, tenant_disabled = row

        nonce = h.get(signing.HEADER_NONCE.lower(), "")
        if NONCE_RE.fullmatch(nonce) is None:
            raise _refuse(401, "bad_nonce", "X-Pushwire-Nonce must be 16..64 characters of [A-Za-z0-9_-]")
        timestamp = h.get(signing.HEADER_TIMESTAMP.lower(), "")
        given = h.get(signing.HEADER_SIGNATURE.lower(), "")
        secret = self.box.open(key.secret_enc, key.id)
        query = signing.canonical_query_from_string(req.raw_query)
        expected = signing.sign(secret, req.method, req.path, query, timestamp, nonce, req.body)
        if not signing.signatures_match(expected, given.lower()):
            raise _refuse(401, "bad_signature", "signature does not match the request")

        if not timestamp.isdigit() or abs(self.clock() - int(timestamp)) > signing.TIMESTAMP_WINDOW:
            raise _refuse(401, "timestamp_out_of_window", "X-Pushwire-Timestamp is more than 300 s from server time")

        if not await self.cache.set_if_absent(f"nonce:{key.id}:{nonce}", b"1", signing.NONCE_TTL):
            raise _refuse(401, "replayed", "this nonce was already used with this key")

        ip = client_ip(req.peer, h.get("x-forwarded-for"), self.trusted)
        if not ip_allowed(ip, key.allow_ips or []):
            raise _refuse(403, "ip_not_allowed", f"caller address {ip} is not in this key's allow-list")

        if scope is not None and scope not in key.scopes:
            raise _refuse(403, "scope_missing", f"this key lacks the {scope!r} scope")
        if not app.enabled or tenant_disabled:
            raise _refuse(403, "app_disabled", "this app is disabled")
        return Caller(key_id=key.id, app=app_view(app), scopes=tuple(key.scopes), is_operator=key.is_operator)

    async def take_push_tokens(self, caller: Caller, cost: int = 1) -> None:
        """The app's push rate, shared by every instance through the cache."""
        limits = caller.app.limits
        if cost > limits.push_burst:
            raise ApiError(
                422,
                "invalid_request",
                f"{cost} messages exceed this app's push burst of {limits.push_burst}; send smaller batches",
                [{"field": "$.messages", "message": f"at most {limits.push_burst} per request"}],
            )
        result = await self.cache.take_tokens(f"rate:push:{caller.app_id}", limits.push_rate, limits.push_burst, cost)
        if not result.allowed:
            retry = max(1, int(result.retry_after + 0.999))
            raise ApiError(
                429,
                "rate_limited",
                f"over the app's push rate of {limits.push_rate}/s",
                headers={"Retry-After": str(retry)},
            )

    async def _key(self, key_id: str) -> tuple[_KeyRow, App, bool] | None:
        k, a, t = table_of(ServerKey), table_of(App), table_of(Tenant)
        q = (
            sa.select(k.c.id, k.c.secret_enc, k.c.scopes, k.c.allow_ips, k.c.is_operator, a, t.c.disabled)
            .join(a, a.c.id == k.c.app_id)
            .join(t, t.c.id == a.c.tenant_id)
            .where(k.c.id == key_id, k.c.revoked_at.is_(None))
        )
        # Core on a bare connection: this runs on every signed request.
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(q)).mappings().first()
        if row is None:
            return None
        app = App(**{c.name: row[c] for c in a.c})
        key = _KeyRow(
            id=row[k.c.id],
            secret_enc=row[k.c.secret_enc],
            scopes=list(row[k.c.scopes]),
            allow_ips=list(row[k.c.allow_ips] or []),
            is_operator=bool(row[k.c.is_operator]),
        )
        return key, app, bool(row[t.c.disabled])


class _KeyRow(msgspec.Struct, frozen=True):
    id: str
    secret_enc: bytes
    scopes: list[str]
    allow_ips: list[str]
    is_operator: bool
