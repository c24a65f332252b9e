"""Console users and their tenant memberships (roles)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pushwire.storage.dialect import UTCDateTime, name_type, utcnow
from pushwire.storage.models.base import Base

ROLES = ("operator", "tenant_admin", "tenant_viewer")


class ConsoleUser(Base):
    __tablename__ = "console_users"

    id: Mapped[str] = mapped_column(name_type(32), primary_key=True)
    # Stored lower-cased; unique because it is the login name.
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    # Operators see every tenant; other roles come from memberships.
    is_operator: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"

    # PK (user, tenant) answers "my tenants"; the tenant_id index answers "who is in this tenant".
    user_id: Mapped[str] = mapped_column(
        name_type(32), sa.ForeignKey("console_users.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[str] = mapped_column(
        name_type(32), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(sa.String(16))
