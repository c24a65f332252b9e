"""Channels (epoch and top offset), stored messages, idempotency records and the outbox."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pushwire.storage.dialect import BigIntPK, UTCDateTime, big_blob, big_text, exact_text, name_type, utcnow
from pushwire.storage.models.base import Base


class Channel(Base):
    __tablename__ = "channels"

    # PK (app, name): the row locked by `UPDATE ... SET top_offset = top_offset + n` at publish.
    app_id: Mapped[str] = mapped_column(name_type(20), sa.ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(name_type(164), primary_key=True)
    # Changes only when the channel's stored history is lost or reset.
    epoch: Mapped[str] = mapped_column(name_type(16))
    top_offset: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # A delivery is (channel, offset): unique, and the range scan of history/recovery.
        sa.UniqueConstraint("app_id", "channel", "offset"),
        # Console lookup by message id, and replay of one message.
        sa.Index("ix_messages_app_id_message_id", "app_id", "message_id"),
        # Retention sweeps and time-range browsing.
        sa.Index("ix_messages_app_id_created_at", "app_id", "created_at"),
    )

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # One message pushed to several channels keeps one id across its deliveries.
    message_id: Mapped[str] = mapped_column(name_type(32))
    app_id: Mapped[str] = mapped_column(name_type(20), sa.ForeignKey("apps.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(name_type(164))
    offset: Mapped[int] = mapped_column(sa.BigInteger)
    event: Mapped[str] = mapped_column(name_type(64))
    # The JSON text exactly as accepted: re-serialising could change what the client sees.
    data: Mapped[str] = mapped_column(big_text())
    idempotency_key: Mapped[str | None] = mapped_column(exact_text(128), nullable=True)
    replay_of: Mapped[str | None] = mapped_column(name_type(32), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"
    # created_at index: the 24 h expiry sweep.
    __table_args__ = (sa.Index("ix_idempotency_keys_created_at", "created_at"),)

    # PK (app, key): the insert that claims a key is the atomic duplicate check.
    app_id: Mapped[str] = mapped_column(name_type(20), sa.ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(exact_text(128), primary_key=True)
    message_id: Mapped[str] = mapped_column(name_type(32))
    # The first 202 body's deliveries, returned again on a repeat.
    result: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxEntry(Base):
    __tablename__ = "outbox"
    # (shard, id): a relay owning one shard reads its rows in commit order.
    __table_args__ = (sa.Index("ix_outbox_shard_id", "shard", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(name_type(32))
    app_id: Mapped[str] = mapped_column(name_type(20))
    # Hash of the channel: all of a channel's rows share a shard, so one relay keeps their order.
    shard: Mapped[int] = mapped_column(sa.SmallInteger)
    channel: Mapped[str] = mapped_column(name_type(164))
    offset: Mapped[int] = mapped_column(sa.BigInteger)
    # The encoded bus envelope (msgspec), ready to produce.
    payload: Mapped[bytes] = mapped_column(big_blob())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
