"""Tenancy service: tenants, apps, server keys and client keys.

Every read and write takes the caller's tenant scope (`tenant_id`, or None for an operator)
and filters by it here, in the service, so a guard that forgets a check still leaks nothing.
The same scope decides who may raise an app's limits (operators only). After each change that
can end open connections (a key revoked, an app or tenant changed) the optional `on_change`
observer is told, so the running instances act on it at once (tenants/changes.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from pushwire import ids
from pushwire.storage.dialect import utcnow
from pushwire.storage.models import App, Tenant
from pushwire.tenants.base import app_view, tenant_view
from pushwire.tenants.errors import Invalid, NotFound
from pushwire.tenants.inputs import normalise_cidrs, normalise_origins, normalise_scopes, public_key_alg
from pushwire.tenants.keys import KeyService
from pushwire.tenants.limits import check_limits
from pushwire.tenants.views import (
    SCOPES,
    AppCreated,
    AppLimits,
    AppView,
    ClientKeySecret,
    TenantView,
)

__all__ = [
    "Invalid",
    "NotFound",
    "TenancyService",
    "app_view",
    "normalise_cidrs",
    "normalise_origins",
    "normalise_scopes",
    "public_key_alg",
]


class TenancyService(KeyService):
    """Tenants and apps here; keys in KeyService (tenants/keys.py)."""

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
            return tenant_view(tenant)

    async def list_tenants(self, tenant_id: str | None) -> list[TenantView]:
        q = sa.select(Tenant).order_by(Tenant.name)
        if tenant_id is not None:
            q = q.where(Tenant.id == tenant_id)
        async with self.db.session() as s:
            return [tenant_view(t) for t in (await s.scalars(q)).all()]

    async def set_tenant_disabled(self, tenant_id: str, disabled: bool) -> TenantView:
        """Operators only (no scope): a disabled tenant's apps refuse tokens, pushes and connections."""
        async with self.db.session() as s:
            t = await s.get(Tenant, tenant_id)
            if t is None:
                raise NotFound(tenant_id)
            changed = t.disabled != disabled
            t.disabled = disabled
            await s.commit()
            view = tenant_view(t)
            app_ids = list((await s.scalars(sa.select(App.id).where(App.tenant_id == tenant_id))).all())
        if changed:
            await self._announce("tenant.update", *app_ids)
        return view

    async def get_tenant(self, tenant_id: str) -> TenantView:
        async with self.db.session() as s:
            t = await s.get(Tenant, tenant_id)
            if t is None:
                raise NotFound(tenant_id)
            return tenant_view(t)

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
        """`limits` must be within the platform maxima; a tenant (`tenant_id` set) may not raise any."""
        async with self.db.session() as s:
            app = await self._app_row(s, app_id, tenant_id)
            before = app_view(app)
            if enabled is not None:
                app.enabled = enabled
            if origins is not None:
                app.allowed_origins = normalise_origins(origins)
            if limits is not None:
                check_limits(limits, before.limits, self.maxima, may_raise=tenant_id is None)
                for field, value in msgspec.structs.asdict(limits).items():
                    setattr(app, field, value)
            await s.commit()
            after = app_view(app)
        if after != before:
            await self._announce("app.update", app_id)
        return after
