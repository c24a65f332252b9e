"""The audit log: every key/app change and every replay, with who did it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pushwire.storage.dialect import BigIntPK, UTCDateTime, name_type, utcnow
from pushwire.storage.models.base import Base


class AuditEntry(Base):
    __tablename__ = "audit_log"
    # The audit page lists a tenant's (or an app's) entries newest first.
    __table_args__ = (
        sa.Index("ix_audit_log_tenant_id_created_at", "tenant_id", "created_at"),
        sa.Index("ix_audit_log_app_id_created_at", "app_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str | None] = mapped_column(name_type(32), nullable=True)
    app_id: Mapped[str | None] = mapped_column(name_type(20), nullable=True)
    actor: Mapped[str] = mapped_column(sa.String(254))
    action: Mapped[str] = mapped_column(sa.String(64))
    target: Mapped[str] = mapped_column(sa.String(164), default="")
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
