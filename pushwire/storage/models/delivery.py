"""Per-user delivery state: acknowledged offsets and presence routes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pushwire.storage.dialect import UTCDateTime, name_type, utcnow
from pushwire.storage.models.base import Base


class Ack(Base):
    __tablename__ = "acks"

    # PK (app, user, channel): read on every (re)connect to replay unread messages.
    app_id: Mapped[str] = mapped_column(name_type(20), sa.ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(name_type(128), primary_key=True)
    channel: Mapped[str] = mapped_column(name_type(164), primary_key=True)
    offset: Mapped[int] = mapped_column(sa.BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PresenceRoute(Base):
    __tablename__ = "presence_routes"
    __table_args__ = (
        # Presence reads: which connections does this user of this app have?
        sa.Index("ix_presence_routes_app_id_user_id", "app_id", "user_id"),
        # Removing a dead instance's routes when its registry lease expires.
        sa.Index("ix_presence_routes_instance_id", "instance_id"),
        # The last_seen sweep, the backstop when an instance dies without a registry event.
        sa.Index("ix_presence_routes_last_seen", "last_seen"),
    )

    # One row per connection (session), so a user's devices are separate routes.
    session_id: Mapped[str] = mapped_column(name_type(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(name_type(20), sa.ForeignKey("apps.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(name_type(128))
    instance_id: Mapped[str] = mapped_column(name_type(64))
    transport: Mapped[str] = mapped_column(sa.String(8))
    info: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    since: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
