"""Tenancy service: tenants, apps, server keys and client keys.

Every read and write takes the caller's tenant scope (`tenant_id`, or None for an operator)
and filters by it here, in the service, so a guard that forgets a check still leaks nothing.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence

import msgspec
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy.exc import IntegrityError

from pushwire import ids
from pushwire.storage.database import Database
from pushwire.storage.dialect import utcnow
from pushwire.storage.models import App, ClientKey, ServerKey, Tenant
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.views import (
    SCOPES,
    AppCreated,
    AppLimits,
    AppView,
    ClientKeySecret,
    ClientKeyView,
    KeySecret,
    ServerKeyView,
    TenantView,
)


class NotFound(Exception):
    """The object does not exist *in the caller's scope* (never says which)."""


class Invalid(ValueError):
    """Input that breaks a rule; the message is for a person."""


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _tenant_view(t: Tenant) -> TenantView:
    return TenantView(tenant_id=t.id, name=t.name, disabled=t.disabled, created_at=_iso(t.created_at) or "")


def app_view(a: App) -> AppView:
    return AppView(
        app_id=a.id,
        tenant_id=a.tenant_id,
        name=a.name,
        enabled=a.enabled,
        allowed_origins=list(a.allowed_origins or []),
        limits=AppLimits(
            max_token_lifetime=a.max_token_lifetime,
            max_connections=a.max_connections,
            max_connections_per_user=a.max_connections_per_user,
            push_rate=a.push_rate,
            push_burst=a.push_burst,
            max_payload_bytes=a.max_payload_bytes,
            hot_history_size=a.hot_history_size,
            retention_days=a.retention_days,
        ),
    )


def _key_view(k: ServerKey) -> ServerKeyView:
    return ServerKeyView(
        key_id=k.id,
        app_id=k.app_id,
        label=k.label,
        scopes=list(k.scopes),
        allow_ips=list(k.allow_ips or []),
        created_at=_iso(k.created_at) or "",
        revoked_at=_iso(k.revoked_at),
    )


def _client_key_view(k: ClientKey) -> ClientKeyView:
    return ClientKeyView(
        kid=k.kid, app_id=k.app_id, alg=k.alg, created_at=_iso(k.created_at) or "", revoked_at=_iso(k.revoked_at)
    )


def normalise_scopes(scopes: Sequence[str] | None) -> list[str]:
    if not scopes:
        return list(SCOPES)
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise Invalid(f"unknown scope(s) {', '.join(unknown)}; use {', '.join(SCOPES)}")
    return [s for s in SCOPES if s in scopes]


def normalise_cidrs(cidrs: Sequence[str] | None) -> list[str]:
    out = []
    for cidr in cidrs or ():
        try:
            out.append(str(ipaddress.ip_network(cidr.strip(), strict=False)))
        except ValueError:
            raise Invalid(f"{cidr!r} is not an IPv4/IPv6 address or CIDR") from None
    return out


def normalise_origins(origins: Sequence[str] | None) -> list[str]:
    out = []
    for origin in origins or ():
        origin = origin.strip().rstrip("/")
        if not origin.startswith(("http://", "https://")) or "/" in origin.split("://", 1)[1]:
            raise Invalid(f"{origin!r} is not an origin (scheme://host[:port])")
        out.append(origin.lower())
    return out


def public_key_alg(pem: str) -> str:
    """RS256 for RSA keys, ES256 for P-256 keys; anything else is refused."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError:
        raise Invalid("not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise Invalid("RSA keys must be at least 2048 bits")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise Invalid("only RSA (RS256) and P-256 EC (ES256) public keys are supported")


class TenancyService:
    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box

    # -- tenants -------------------------------------------------------
    async def create_tenant(self, name: str) -> TenantView:
        name = name.strip()
        if not 1 <= len(name) <= 64:
            raise Invalid("tenant name must be 1..64 characters")
        async with self.db.session() as s:
            tenant = Tenant(id=ids.tenant_id(), name=name, disabled=False, created_at=utcnow())
            s.add(tenant)
            try:
                await s.commit()
            except IntegrityError:
                raise Invalid(f"a tenant named {name!r} exists") from None
            return _tenant_view(tenant)

    async def list_tenants(self, tenant_id: str | None) -> list[TenantView]:
        q = sa.select(Tenant).order_by(Tenant.name)
        if tenant_id is not None:
            q = q.where(Tenant.id == tenant_id)
        async with self.db.session() as s:
            return [_tenant_view(t) for t in (await s.scalars(q)).all()]

    async def get_tenant(self, tenant_id: str) -> TenantView:
        async with self.db.session() as s:
            t = await s.get(Tenant, tenant_id)
            if t is None:
                raise NotFound(tenant_id)
            return _tenant_view(t)

    # -- apps ----------------------------------------------------------
    async def create_app(
        self, tenant_id: str, name: str, origins: Sequence[str] | None = None, limits: AppLimits | None = None
    ) -> AppCreated:
        name = name.strip()
        if not 1 <= len(name) <= 64:
            raise Invalid("app name must be 1..64 characters")
        limits = limits or AppLimits()
        await self.get_tenant(tenant_id)
        async with self.db.session() as s:
            for _ in range(5):  # random ids: retry the rare collision
                app = App(
                    id=ids.app_id(),
                    tenant_id=tenant_id,
                    name=name,
                    enabled=True,
                    allowed_origins=normalise_origins(origins),
                    **msgspec.structs.asdict(limits),
                )
                s.add(app)
                try:
                    await s.flush()
                    break
                except IntegrityError as exc:
                    await s.rollback()
                    if "name" in str(exc.orig).lower() or "uq_apps" in str(exc.orig):
                        raise Invalid(f"this tenant already has an app named {name!r}") from None
            key = self._new_server_key(app.id, list(SCOPES), [], "default")
            ck, ck_secret = self._new_hs_client_key(app.id)
            s.add_all([key[0], ck])
            await s.commit()
            return AppCreated(
                app_id=app.id, server_key=key[1], client_key=ClientKeySecret(kid=ck.kid, secret=ck_secret)
            )

    async def get_app(self, app_id: str, tenant_id: str | None) -> AppView:
        async with self.db.session() as s:
            return app_view(await self._app_row(s, app_id, tenant_id))

    async def list_apps(self, tenant_id: str | None) -> list[AppView]:
        q = sa.select(App).order_by(App.created_at)
        if tenant_id is not None:
            q = q.where(App.tenant_id == tenant_id)
        async with self.db.session() as s:
            return [app_view(a) for a in (await s.scalars(q)).all()]

    async def update_app(
        self,
        app_id: str,
        tenant_id: str | None,
        *,
        enabled: bool | None = None,
        origins: Sequence[str] | None = None,
        limits: AppLimits | None = None,
    ) -> AppView:
        async with self.db.session() as s:
            app = await self._app_row(s, app_id, tenant_id)
            if enabled is not None:
                app.enabled = enabled
            if origins is not None:
                app.allowed_origins = normalise_origins(origins)
            if limits is not None:
                for field, value in msgspec.structs.asdict(limits).items():
                    if value < 1:
                        raise Invalid(f"{field} must be at least 1")
                    setattr(app, field, value)
            await s.commit()
            return app_view(app)

    # -- server keys ---------------------------------------------------
    async def create_server_key(
        self,
        app_id: str,
        tenant_id: str | None,
        scopes: Sequence[str] | None = None,
        allow_ips: Sequence[str] | None = None,
        label: str = "",
        operator: bool = False,
    ) -> KeySecret:
        """`operator` keys also call the admin API; only the CLI (server access) may make them."""
        scopes_n, cidrs = normalise_scopes(scopes), normalise_cidrs(allow_ips)
        async with self.db.session() as s:
            await self._app_row(s, app_id, tenant_id)
            row, secret = self._new_server_key(app_id, scopes_n, cidrs, label)
            row.is_operator = operator
            s.add(row)
            await s.commit()
            return secret

    async def list_server_keys(self, app_id: str, tenant_id: str | None) -> list[ServerKeyView]:
        async with self.db.session() as s:
            await self._app_row(s, app_id, tenant_id)
            rows = await s.scalars(
                sa.select(ServerKey).where(ServerKey.app_id == app_id).order_by(ServerKey.created_at)
            )
            return [_key_view(k) for k in rows.all()]

    async def revoke_server_key(self, key_id: str, tenant_id: str | None) -> ServerKeyView:
        async with self.db.session() as s:
            q = sa.select(ServerKey).join(App, App.id == ServerKey.app_id).where(ServerKey.id == key_id)
            if tenant_id is not None:
                q = q.where(App.tenant_id == tenant_id)
            key = (await s.scalars(q)).first()
            if key is None:
                raise NotFound(key_id)
            if key.revoked_at is None:
                key.revoked_at = utcnow()
                await s.commit()
            return _key_view(key)

    # -- client keys ---------------------------------------------------
    async def create_client_key(
        self, app_id: str, tenant_id: str | None, public_key_pem: str | None = None
    ) -> ClientKeySecret:
        async with self.db.session() as s:
            await self._app_row(s, app_id, tenant_id)
            if public_key_pem is None:
                row, secret = self._new_hs_client_key(app_id)
            else:
                alg = public_key_alg(public_key_pem)
                row = ClientKey(kid=ids.client_key_id(), app_id=app_id, alg=alg, public_key_pem=public_key_pem.strip())
                secret = None
            s.add(row)
            await s.commit()
            return ClientKeySecret(kid=row.kid, secret=secret)

    async def list_client_keys(self, app_id: str, tenant_id: str | None) -> list[ClientKeyView]:
        async with self.db.session() as s:
            await self._app_row(s, app_id, tenant_id)
            rows = await s.scalars(
                sa.select(ClientKey).where(ClientKey.app_id == app_id).order_by(ClientKey.created_at)
            )
            return [_client_key_view(k) for k in rows.all()]

    async def revoke_client_key(self, kid: str, app_id: str, tenant_id: str | None) -> None:
        async with self.db.session() as s:
            await self._app_row(s, app_id, tenant_id)
            key = await s.get(ClientKey, kid)
            if key is None or key.app_id != app_id:
                raise NotFound(kid)
            key.revoked_at = key.revoked_at or utcnow()
            await s.commit()

    async def hs256_signing_secret(self, app_id: str, tenant_id: str | None) -> tuple[str, str]:
        """(kid, secret) of the newest active HS256 client key: for minting development tokens."""
        async with self.db.session() as s:
            await self._app_row(s, app_id, tenant_id)
            q = (
                sa.select(ClientKey)
                .where(ClientKey.app_id == app_id, ClientKey.alg == "HS256", ClientKey.revoked_at.is_(None))
                .order_by(ClientKey.created_at.desc())
            )
            key = (await s.scalars(q)).first()
            if key is None or key.secret_enc is None:
                raise Invalid("the app has no active HS256 client key to sign with")
            return key.kid, self.box.open(key.secret_enc, key.kid)

    # -- helpers -------------------------------------------------------
    async def _app_row(self, s: object, app_id: str, tenant_id: str | None) -> App:
        q = sa.select(App).where(App.id == app_id)
        if tenant_id is not None:
            q = q.where(App.tenant_id == tenant_id)
        app: App | None = (await s.scalars(q)).first()  # type: ignore[attr-defined]
        if app is None:
            raise NotFound(app_id)
        return app

    def _new_server_key(
        self, app_id: str, scopes: list[str], cidrs: list[str], label: str
    ) -> tuple[ServerKey, KeySecret]:
        key_id, secret = ids.server_key_id(), ids.secret()
        row = ServerKey(
            id=key_id,
            app_id=app_id,
            label=label[:64],
            secret_enc=self.box.seal(secret, key_id),
            scopes=scopes,
            allow_ips=cidrs,
            created_at=utcnow(),
        )
        return row, KeySecret(key_id=key_id, secret=secret)

    def _new_hs_client_key(self, app_id: str) -> tuple[ClientKey, str]:
        kid, secret = ids.client_key_id(), ids.secret()
        return ClientKey(kid=kid, app_id=app_id, alg="HS256", secret_enc=self.box.seal(secret, kid)), secret
