"""Verification of signed server-API requests, in the spec's order, with its error codes.

The hot path reads no database row: server keys are held in process (tenants/key_cache.py) and
checked against the app's stamp, read in the same cache round trip as the nonce and the push
rate (Cache.admit), so a revocation on any instance holds from the next request everywhere.
Nonces go through the shared cache, so a replay is caught whichever instance it reaches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import msgspec
import sqlalchemy as sa

from pushwire.cache.base import Admission, BucketTake, Cache, TokenBucketResult
from pushwire.errors import ApiError
from pushwire.names import NONCE_RE
from pushwire.storage.database import Database
from pushwire.storage.dialect import table_of
from pushwire.storage.models import App, ServerKey, Tenant
from pushwire.tenants import signing
from pushwire.tenants.base import app_view
from pushwire.tenants.changes import stamp_key
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.ip_allow import Address, Network, client_ip, ip_allowed, networks
from pushwire.tenants.key_cache import MAX_AGE, UNSHARED_MAX_AGE, UNVERIFIED, KeyCache, KeyEntry
from pushwire.tenants.views import AppLimits, AppView

# What a request costs against its app's push rate, known only once it is authenticated (a batch
# counts its valid messages); 0 takes nothing.
Cost = int | Callable[["Caller"], int]


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


def _rate_limited(limits: AppLimits, result: TokenBucketResult) -> ApiError:
    retry = max(1, int(result.retry_after + 0.999)) if result.retry_after < 1e9 else 3600
    return ApiError(
        429, "rate_limited", f"over the app's push rate of {limits.push_rate}/s", headers={"Retry-After": str(retry)}
    )


def _over_burst(limits: AppLimits, cost: int) -> ApiError:
    return ApiError(
        422,
        "invalid_request",
        f"{cost} messages exceed this app's push burst of {limits.push_burst}; send smaller batches",
        [{"field": "$.messages", "message": f"at most {limits.push_burst} per request"}],
    )


def _caller(entry: KeyEntry) -> Caller:
    return Caller(key_id=entry.key_id, app=entry.app, scopes=tuple(sorted(entry.scopes)), is_operator=entry.is_operator)


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
        self.keys = KeyCache(max_age=MAX_AGE if cache.shared else UNSHARED_MAX_AGE)

    def forget_app(self, app_id: str) -> None:
        """Drop the app's cached keys (a change notice arrived): the next request reloads them."""
        self.keys.forget_app(app_id)

    async def key_entry(self, key_id: str) -> KeyEntry | None:
        """The key as held in process (loaded on a miss); None when unknown or revoked. The Pusher
        protocol (pushwire/pusher) names keys this way; its callers check the app's stamp."""
        entry = self.keys.get(key_id)
        return entry if entry is not None else await self._load(key_id, UNVERIFIED)

    async def authenticate(self, req: SignedRequest, scope: str | None, cost: Cost = 0) -> Caller:
        """Check `req` in the spec's order; with a `cost`, also take it from the app's push rate
        (same round trip as the nonce), refusing with 429 when over it."""
        h = req.headers
        key_id = h.get(signing.HEADER_KEY.lower(), "")
        entry = self.keys.get(key_id) if key_id else None
        if entry is None and key_id:
            entry = await self._load(key_id, UNVERIFIED)
        if entry is None:
            raise _refuse(401, "unknown_key", "unknown or revoked key")
        nonce = h.get(signing.HEADER_NONCE.lower(), "")
        ip = client_ip(req.peer, h.get("x-forwarded-for"), self.trusted)
        return await self.admit(
            entry,
            lambda e: self._check_signature(e, req, nonce),
            f"nonce:{entry.key_id}:{nonce}",
            signing.NONCE_TTL,
            ip,
            scope,
            cost,
            "this nonce was already used with this key",
        )

    async def admit(
        self,
        entry: KeyEntry,
        check: Callable[[KeyEntry], None],
        replay_key: str | None,
        replay_ttl: float,
        ip: Address | None,
        scope: str | None,
        cost: Cost = 0,
        replayed: str = "this request was already made",
    ) -> Caller:
        """The spec's order after the key is found, for any signing scheme (the native one above,
        Pusher's in pushwire/pusher/http_auth.py): `check` raises for a request the entry's secret
        did not sign; then, in one cache round trip, `replay_key` is stored (a second use within
        `replay_ttl` is refused with `replayed`; None: no replay check), the app's stamp read and
        `cost` taken from its push rate. An entry whose app changed since it was loaded is
        reloaded and checked again, so a revoked key or a removed scope is refused at once on
        every instance."""
        check(entry)
        refusal = self.refusal(entry, ip, scope)
        bucket, known = self._bucket(entry, refusal, cost)
        if replay_key is None:
            # The stamp alone; a cost is then taken by _charge (its own round trip).
            stamp = await self.cache.get(stamp_key(entry.app.app_id))
            admission = Admission(fresh=True, stamp=stamp or b"")
        else:
            admission = await self.cache.admit(replay_key, replay_ttl, stamp_key(entry.app.app_id), bucket)
        if admission.stamp != entry.stamp:
            # The app or its keys changed since this entry was loaded: decide on fresh rows.
            self.keys.forget_app(entry.app.app_id)
            fresh = await self._load(entry.key_id, admission.stamp)
            if fresh is None:
                raise _refuse(401, "unknown_key", "unknown or revoked key")
            entry = fresh
            check(entry)
            refusal = self.refusal(entry, ip, scope)
        if not admission.fresh:
            raise _refuse(401, "replayed", replayed)
        if refusal is not None:
            raise refusal
        await self._charge(entry, admission, bucket, known, cost)
        return _caller(entry)

    def _check_signature(self, entry: KeyEntry, req: SignedRequest, nonce: str) -> None:
        """The checks that need no shared state: nonce format, signature, timestamp window."""
        h = req.headers
        if NONCE_RE.fullmatch(nonce) is None:
            raise _refuse(401, "bad_nonce", "X-Pushwire-Nonce must be 16..64 characters of [A-Za-z0-9_-]")
        timestamp = h.get(signing.HEADER_TIMESTAMP.lower(), "")
        given = h.get(signing.HEADER_SIGNATURE.lower(), "")
        query = signing.canonical_query_from_string(req.raw_query)
        expected = signing.sign(entry.secret, req.method, req.path, query, timestamp, nonce, req.body)
        if not signing.signatures_match(expected, given.lower()):
            raise _refuse(401, "bad_signature", "signature does not match the request")
        if not timestamp.isdigit() or abs(self.clock() - int(timestamp)) > signing.TIMESTAMP_WINDOW:
            raise _refuse(401, "timestamp_out_of_window", "X-Pushwire-Timestamp is more than 300 s from server time")

    def refusal(self, entry: KeyEntry, ip: Address | None, scope: str | None) -> ApiError | None:
        """The refusals that come after the nonce in the spec's order (raised once it is checked)."""
        if not ip_allowed(ip, entry.allow):
            return _refuse(403, "ip_not_allowed", f"caller address {ip} is not in this key's allow-list")
        if scope is not None and scope not in entry.scopes:
            return _refuse(403, "scope_missing", f"this key lacks the {scope!r} scope")
        if not entry.app.enabled or entry.tenant_disabled:
            return _refuse(403, "app_disabled", "this app is disabled")
        return None

    def _bucket(self, entry: KeyEntry, refusal: ApiError | None, cost: Cost) -> tuple[BucketTake | None, int | None]:
        """The rate-limit take to send with the nonce (none for a request refused anyway), and
        the cost if it was worked out (a batch's is worked out once)."""
        if refusal is not None:
            return None, None
        n = cost(_caller(entry)) if callable(cost) else cost
        limits = entry.app.limits
        if n <= 0 or n > limits.push_burst:
            return None, n
        return BucketTake(
            key=f"rate:push:{entry.app.app_id}", rate=limits.push_rate, burst=limits.push_burst, cost=n
        ), n

    async def _charge(
        self, entry: KeyEntry, admission: Admission, bucket: BucketTake | None, known: int | None, cost: Cost
    ) -> None:
        """Refuse over the push rate. The take normally rode with the nonce; when it could not
        (the entry was reloaded, or the request was over the burst) it is decided here."""
        n = known if known is not None else (cost(_caller(entry)) if callable(cost) else cost)
        if n <= 0:
            return
        limits = entry.app.limits
        if n > limits.push_burst:
            raise _over_burst(limits, n)
        result = admission.bucket if bucket is not None else None
        if result is None:
            result = await self.cache.take_tokens(
                f"rate:push:{entry.app.app_id}", limits.push_rate, limits.push_burst, n
            )
        if not result.allowed:
            raise _rate_limited(limits, result)

    async def _load(self, key_id: str, stamp: bytes) -> KeyEntry | None:
        """The key's rows (None: unknown or revoked), cached with `stamp`, which the caller read
        before this load (or UNVERIFIED)."""
        k, a, t = table_of(ServerKey), table_of(App), table_of(Tenant)
        q = (
            sa.select(k.c.id, k.c.secret_enc, k.c.scopes, k.c.allow_ips, k.c.is_operator, a, t.c.disabled)
            .join(a, a.c.id == k.c.app_id)
            .join(t, t.c.id == a.c.tenant_id)
            .where(k.c.id == key_id, k.c.revoked_at.is_(None))
        )
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(q)).mappings().first()
        if row is None:
            return None
        app: AppView = app_view(App(**{c.name: row[c] for c in a.c}))
        entry = KeyEntry(
            key_id=row[k.c.id],
            secret=self.box.open(row[k.c.secret_enc], row[k.c.id]),
            scopes=frozenset(row[k.c.scopes]),
            allow=networks(row[k.c.allow_ips] or []),
            is_operator=bool(row[k.c.is_operator]),
            app=app,
            tenant_disabled=bool(row[t.c.disabled]),
            stamp=stamp,
            loaded=time.monotonic(),
        )
        self.keys.put(entry)
        return entry
