"""End-user client tokens (spec section 3, "Token"): verification and the identity they grant.

The key is picked by (app, kid) and the JWT is verified with exactly that key's one algorithm,
so `alg: none` and algorithm confusion (HS256 signed with an RSA public key) cannot pass.
Nothing unverified is trusted beyond choosing which key to try.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import jwt
import msgspec
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pushwire.names import APP_ID_RE, BROADCAST, CHANNEL_RE, PERSONAL_PREFIX, is_channel, is_user_id, personal_channel
from pushwire.realtime import jwt_plain
from pushwire.storage.database import Database
from pushwire.storage.models import App, ClientKey, Tenant
from pushwire.tenants.crypto import SecretBox

log = logging.getLogger(__name__)

MAX_TOKEN_BYTES = 8 * 1024
MAX_INFO_BYTES = 1024
MAX_CACHE_ENTRIES = 10_000
ALGORITHMS = ("HS256", "RS256", "ES256")


class ClientIdentity(msgspec.Struct, frozen=True):
    app_id: str
    tenant_id: str
    user_id: str
    channels: tuple[str, ...]
    info: dict[str, Any] | None
    expires_at: float
    max_connections: int
    max_connections_per_user: int
    allowed_origins: tuple[str, ...]
    # The client key that signed the token: open connections are closed when it is revoked.
    kid: str = ""

    def may_subscribe(self, channel: str) -> bool:
        if channel == BROADCAST:
            return True
        if channel.startswith(PERSONAL_PREFIX):
            # Checked before the patterns: `*` or `user.*` must never open another user's channel.
            return channel == personal_channel(self.user_id)
        if not is_channel(channel):
            return False
        for entry in self.channels:
            if entry.endswith("*") and channel.startswith(entry[:-1]):
                return True
            if entry == channel:
                return True
        return False


class TokenError(Exception):
    """A refused token; `reason` is short, for a person, and never contains the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Entry(msgspec.Struct, frozen=True):
    """A client key with its app's settings, as cached."""

    alg: str
    material: Any  # the HS secret (str) or a loaded public key
    revoked: bool
    usable: bool  # app enabled and tenant not disabled
    tenant_id: str
    max_token_lifetime: int
    max_connections: int
    max_connections_per_user: int
    allowed_origins: tuple[str, ...]
    loaded_at: float
    # HS256 only: the secret as PyJWT prepares it, for the plain-token path (jwt_plain.py).
    hs_secret: bytes | None = None


def _is_pattern(entry: object) -> bool:
    """A channel name, or a prefix followed by one trailing `*` (the prefix may be empty)."""
    if not isinstance(entry, str) or not entry:
        return False
    if entry.endswith("*"):
        prefix = entry[:-1]
        return prefix == "" or CHANNEL_RE.fullmatch(prefix) is not None
    return is_channel(entry)


def _number(value: object) -> float | None:
    # bool is an int subclass; NaN/Infinity (which json.loads accepts) would defeat every comparison.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _unverified_app(token: str) -> object:
    """The `app` claim, read without verification: used only to choose which key to look up."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("malformed token")
    try:
        payload = json.loads(jwt.utils.base64url_decode(parts[1]))
    except (ValueError, TypeError, RecursionError):  # RecursionError: deeply nested JSON
        raise TokenError("malformed token") from None
    return payload.get("app") if isinstance(payload, dict) else None


def _hs_secret(alg: str, material: Any) -> bytes | None:
    """An HS256 secret PyJWT would use as it is (long enough, not a PEM/SSH key), else None."""
    if alg != "HS256":
        return None
    try:
        secret = jwt.algorithms.HMACAlgorithm(jwt.algorithms.HMACAlgorithm.SHA256).prepare_key(material)
    except jwt.PyJWTError:
        return None
    return secret if len(secret) >= jwt_plain.MIN_HS256_KEY else None


class ClientTokenVerifier:
    """Verifies client tokens against the apps' client keys.

    Keys are cached in-process by (app_id, kid) for `cache_ttl` seconds, a performance detail.
    A change notice (realtime/revocation.py) calls `invalidate`, so revoking a key or disabling an
    app or tenant takes effect at once on every instance; `cache_ttl` bounds it if a notice is lost.
    """

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        *,
        leeway: float = 30.0,
        cache_ttl: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.box = box
        self.leeway = leeway
        self.cache_ttl = cache_ttl
        self.clock = clock
        self._cache: dict[tuple[str, str], _Entry] = {}
        # Bumped by invalidate(): a load that started before an invalidation is not cached, so a
        # verify racing with a revocation cannot put the old key back for another `cache_ttl`.
        self._generation: dict[str, int] = {}
        self._loading: dict[tuple[str, str], tuple[int, asyncio.Task[_Entry | None]]] = {}

    async def verify(self, token: str, app_hint: str | None = None) -> ClientIdentity:
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenError("token too long")
        plain = jwt_plain.parse(token)
        if plain is not None:
            header, app = plain.header, plain.claims.get("app")
        else:
            try:
                header = jwt.get_unverified_header(token)
            except (jwt.PyJWTError, RecursionError):
                raise TokenError("malformed token") from None
        kid, alg = header.get("kid"), header.get("alg")
        if not isinstance(kid, str) or not kid:
            raise TokenError("token header has no kid")
        if alg not in ALGORITHMS:
            raise TokenError("algorithm not allowed")
        if plain is None:
            app = _unverified_app(token)
        if not isinstance(app, str) or APP_ID_RE.fullmatch(app) is None:
            raise TokenError("missing or invalid app claim")
        if app_hint is not None and app != app_hint:
            raise TokenError("token is for another app")

        key = await self._key(app, kid)
        if key is None:
            raise TokenError("unknown key")
        if key.revoked:
            raise TokenError("key revoked")
        if not key.usable:
            raise TokenError("app disabled")
        if alg != key.alg:
            raise TokenError("algorithm not allowed")

        if plain is not None and key.hs_secret is not None:
            if not jwt_plain.hs256_valid(plain, key.hs_secret):
                raise TokenError("bad signature")
            claims = plain.claims
        else:
            claims = self._decode(token, key)
        return self._identity(claims, app, key, kid)

    def expired(self, identity: ClientIdentity, now: float | None = None) -> bool:
        """The token's exp (plus the leeway) has passed: an open connection must end (4001)."""
        return identity.expires_at + self.leeway <= (self.clock() if now is None else now)

    async def revalidate(self, identity: ClientIdentity) -> str | None:
        """Why an open connection's credentials no longer hold (expired, key revoked, app or tenant
        disabled), or None. Reads the in-process key cache, reloaded after an invalidation."""
        if self.expired(identity):
            return "token expired"
        key = await self._key(identity.app_id, identity.kid)
        if key is None:
            return "unknown key"
        if key.revoked:
            return "key revoked"
        if not key.usable:
            return "app disabled"
        return None

    def invalidate(self, app_id: str) -> None:
        """Forget cached keys of `app_id` (a key or the app changed): the next use reloads them."""
        self._generation[app_id] = self._generation.get(app_id, 0) + 1
        for cache_key in [k for k in self._cache if k[0] == app_id]:
            self._cache.pop(cache_key, None)

    def _decode(self, token: str, key: _Entry) -> dict[str, Any]:
        # Time claims are checked by _identity against our clock; PyJWT checks signature and types.
        options: dict[str, Any] = {
            "verify_exp": False,
            "verify_iat": False,
            "verify_nbf": False,
            "enforce_minimum_key_length": True,
        }
        try:
            return jwt.decode(token, key.material, algorithms=[key.alg], options=options)  # type: ignore[arg-type]
        except jwt.InvalidSignatureError:
            raise TokenError("bad signature") from None
        except jwt.InvalidAlgorithmError:
            raise TokenError("algorithm not allowed") from None
        except jwt.exceptions.InvalidSubjectError:
            raise TokenError("invalid sub claim") from None
        except jwt.InvalidAudienceError:
            raise TokenError("unexpected aud claim") from None
        except jwt.PyJWTError:
            raise TokenError("invalid token") from None

    def _identity(self, claims: dict[str, Any], app: str, key: _Entry, key_id: str) -> ClientIdentity:
        sub = claims.get("sub")
        if sub is None:
            raise TokenError("missing sub claim")
        if not isinstance(sub, str) or not is_user_id(sub):
            raise TokenError("invalid sub claim")
        if claims.get("app") != app:  # the verified claim, not just the one we looked the key up with
            raise TokenError("token is for another app")
        if "exp" not in claims:
            raise TokenError("missing exp claim")
        now = self.clock()
        exp = _number(claims["exp"])
        iat = _number(claims["iat"]) if "iat" in claims else now
        nbf = _number(claims["nbf"]) if "nbf" in claims else now
        if exp is None or iat is None or nbf is None:
            raise TokenError("invalid time claim")
        if exp + self.leeway <= now:
            raise TokenError("token expired")
        if iat > now + self.leeway or nbf > now + self.leeway:
            raise TokenError("token not yet valid")
        if exp - iat > key.max_token_lifetime:
            raise TokenError("token lifetime exceeds the app's maximum")

        channels = claims.get("channels", [])
        if not isinstance(channels, list) or not all(_is_pattern(c) for c in channels):
            raise TokenError("invalid channels claim")
        info = claims.get("info")
        if info is not None:
            if not isinstance(info, dict):
                raise TokenError("invalid info claim")
            if len(msgspec.json.encode(info)) > MAX_INFO_BYTES:
                raise TokenError("info claim too large")

        return ClientIdentity(
            app_id=app,
            tenant_id=key.tenant_id,
            user_id=sub,
            channels=tuple(channels),
            info=info,
            expires_at=exp,
            max_connections=key.max_connections,
            max_connections_per_user=key.max_connections_per_user,
            allowed_origins=key.allowed_origins,
            kid=key_id,
        )

    # -- key cache -----------------------------------------------------
    async def _key(self, app: str, kid: str) -> _Entry | None:
        # Scoped by app as well as kid: a kid alone must never open another tenant's key.
        cache_key = (app, kid)
        entry = self._cache.get(cache_key)
        if entry is not None and time.monotonic() - entry.loaded_at < self.cache_ttl:
            return entry
        generation = self._generation.get(app, 0)
        # A connect storm after the entry expired: one load, shared (not one query per connect),
        # in a task of its own so that a caller that hangs up does not cancel it for the others.
        loading = self._loading.get(cache_key)
        if loading is None or loading[0] != generation:
            task = asyncio.get_running_loop().create_task(self._load(app, kid))
            loading = self._loading[cache_key] = (generation, task)
            task.add_done_callback(functools.partial(self._loaded, cache_key))
        entry = await asyncio.shield(loading[1])
        self._cache.pop(cache_key, None)
        # Misses are not cached: random kids would otherwise evict the real keys.
        if entry is not None and self.cache_ttl > 0 and self._generation.get(app, 0) == generation:
            while len(self._cache) >= MAX_CACHE_ENTRIES:
                self._cache.pop(next(iter(self._cache)))  # dicts keep insertion order: oldest first
            self._cache[cache_key] = entry
        return entry

    def _loaded(self, cache_key: tuple[str, str], task: asyncio.Task[_Entry | None]) -> None:
        if self._loading.get(cache_key, (0, None))[1] is task:
            del self._loading[cache_key]
        if not task.cancelled():
            task.exception()  # seen by its callers; retrieved here should they all have gone

    async def _load(self, app: str, kid: str) -> _Entry | None:
        if len(kid) > 64:
            return None
        q = (
            sa.select(ClientKey, App, Tenant.disabled)
            .join(App, App.id == ClientKey.app_id)
            .join(Tenant, Tenant.id == App.tenant_id)
            .where(ClientKey.kid == kid, ClientKey.app_id == app)
        )
        async with self.db.session() as s:
            row = (await s.execute(q)).first()
        if row is None:
            return None
        key, app_row, tenant_disabled = row
        # Exact comparison: SQL string equality may ignore trailing spaces.
        if key.kid != kid or key.app_id != app:
            return None
        material = self._material(key)
        if material is None:
            return None
        return _Entry(
            hs_secret=_hs_secret(key.alg, material),
            alg=key.alg,
            material=material,
            revoked=key.revoked_at is not None,
            usable=bool(app_row.enabled) and not tenant_disabled,
            tenant_id=app_row.tenant_id,
            max_token_lifetime=app_row.max_token_lifetime,
            max_connections=app_row.max_connections,
            max_connections_per_user=app_row.max_connections_per_user,
            allowed_origins=tuple(app_row.allowed_origins or ()),
            loaded_at=time.monotonic(),
        )

    def _material(self, key: ClientKey) -> Any:
        """The secret or public key, checked against the row's alg (a mismatched row is unusable)."""
        try:
            if key.alg == "HS256" and key.secret_enc is not None:
                return self.box.open(key.secret_enc, key.kid)
            if key.alg in ("RS256", "ES256") and key.public_key_pem:
                pub = serialization.load_pem_public_key(key.public_key_pem.encode())
                if key.alg == "RS256" and isinstance(pub, rsa.RSAPublicKey):
                    return pub
                p256 = isinstance(pub, ec.EllipticCurvePublicKey) and isinstance(pub.curve, ec.SECP256R1)
                if key.alg == "ES256" and p256:
                    return pub
        except Exception:  # noqa: BLE001 - a wrong server secret or a damaged row: refuse, and tell the operator
            log.warning("client key %s of app %s cannot be loaded", key.kid, key.app_id)
            return None
        log.warning("client key %s of app %s does not match its alg %s", key.kid, key.app_id, key.alg)
        return None
