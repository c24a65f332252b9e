"""What the tenancy services share: their dependencies, the scoped app lookup, the change notices."""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa

from pushwire.settings import LimitMaxima
from pushwire.storage.database import Database
from pushwire.storage.models import App, ClientKey, ServerKey, Tenant
from pushwire.tenants.changes import AppChange, ChangeKind, ChangeObserver
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.errors import NotFound
from pushwire.tenants.views import AppLimits, AppView, ClientKeyView, ServerKeyView, TenantView

log = logging.getLogger("pushwire.tenants.service")


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def tenant_view(t: Tenant) -> TenantView:
    return TenantView(tenant_id=t.id, name=t.name, disabled=t.disabled, created_at=iso(t.created_at) or "")


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


def key_view(k: ServerKey) -> ServerKeyView:
    return ServerKeyView(
        key_id=k.id,
        app_id=k.app_id,
        label=k.label,
        scopes=list(k.scopes),
        allow_ips=list(k.allow_ips or []),
        created_at=iso(k.created_at) or "",
        revoked_at=iso(k.revoked_at),
    )


def client_key_view(k: ClientKey) -> ClientKeyView:
    return ClientKeyView(
        kid=k.kid, app_id=k.app_id, alg=k.alg, created_at=iso(k.created_at) or "", revoked_at=iso(k.revoked_at)
    )


class ServiceBase:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        maxima: LimitMaxima | None = None,
        on_change: ChangeObserver | None = None,
    ) -> None:
        self.db = db
        self.box = box
        self.maxima = maxima or LimitMaxima()
        # Set by the runtime (and the CLI): announces changes to every running instance.
        self.on_change = on_change

    async def _announce(self, kind: ChangeKind, *app_ids: str) -> None:
        """Tell the observer, after the commit. The change is stored whatever happens here; if the
        notice is lost, instances still see it when their key cache expires (30 s)."""
        if self.on_change is None:
            return
        for app_id in app_ids:
            try:
                await self.on_change(AppChange(app_id=app_id, kind=kind))
            except Exception:  # announcing is best effort: the commit stands
                log.warning("change %s of app %s not announced to the instances", kind, app_id, exc_info=True)

    async def _app_row(self, s: object, app_id: str, tenant_id: str | None) -> App:
        q = sa.select(App).where(App.id == app_id)
        if tenant_id is not None:
            q = q.where(App.tenant_id == tenant_id)
        app: App | None = (await s.scalars(q)).first()  # type: ignore[attr-defined]
        if app is None:
            raise NotFound(app_id)
        return app
