"""The audit log: who changed which app or key, or replayed what, written after each change; read in scope."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import sqlalchemy as sa

from pushwire.storage.database import Database
from pushwire.storage.dialect import utcnow
from pushwire.storage.models import AuditEntry


class AuditView(msgspec.Struct, frozen=True):
    id: int
    tenant_id: str | None
    app_id: str | None
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    created_at: dt.datetime


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(
        self,
        actor: str,
        action: str,
        *,
        tenant_id: str | None,
        app_id: str | None = None,
        target: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        async with self.db.session() as s:
            s.add(
                AuditEntry(
                    tenant_id=tenant_id,
                    app_id=app_id,
                    actor=actor[:254],
                    action=action[:64],
                    target=target[:164],
                    details=details or {},
                    created_at=utcnow(),
                )
            )
            await s.commit()

    async def entries(
        self, tenant_id: str | None, *, app_id: str | None = None, action: str | None = None, limit: int = 200
    ) -> list[AuditView]:
        """Newest first. `tenant_id` is the caller's scope: None (operators) sees every tenant."""
        q = sa.select(AuditEntry).order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc()).limit(limit)
        if tenant_id is not None:
            q = q.where(AuditEntry.tenant_id == tenant_id)
        if app_id:
            q = q.where(AuditEntry.app_id == app_id)
        if action:
            q = q.where(AuditEntry.action == action)
        async with self.db.session() as s:
            rows = (await s.scalars(q)).all()
        return [
            AuditView(
                id=r.id,
                tenant_id=r.tenant_id,
                app_id=r.app_id,
                actor=r.actor,
                action=r.action,
                target=r.target,
                details=dict(r.details or {}),
                created_at=r.created_at,
            )
            for r in rows
        ]
