"""Tenants, their apps (settings and limits of the spec) and the apps' server and client keys."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pushwire.storage.dialect import UTCDateTime, name_type, utcnow
from pushwire.storage.models.base import Base


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(name_type(32), primary_key=True)
    # Unique: the console and CLI look tenants up by name.
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    disabled: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class App(Base):
    __tablename__ = "apps"
    # One app name per tenant; also serves "list apps of a tenant" (leftmost column).
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name"),)

    # Decimal digits: Pusher-compatible server SDKs refuse anything else.
    id: Mapped[str] = mapped_column(name_type(20), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(name_type(32), sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(64))
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    allowed_origins: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    max_token_lifetime: Mapped[int] = mapped_column(sa.Integer, default=86_400)
    max_connections: Mapped[int] = mapped_column(sa.Integer, default=10_000)
    max_connections_per_user: Mapped[int] = mapped_column(sa.Integer, default=10)
    push_rate: Mapped[int] = mapped_column(sa.Integer, default=1_000)
    push_burst: Mapped[int] = mapped_column(sa.Integer, default=2_000)
    max_payload_bytes: Mapped[int] = mapped_column(sa.Integer, default=65_536)
    hot_history_size: Mapped[int] = mapped_column(sa.Integer, default=1_000)
    retention_days: Mapped[int] = mapped_column(sa.Integer, default=30)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ServerKey(Base):
    __tablename__ = "server_keys"

    # The public key id (sk_...) is the lookup of every signed request: primary key.
    id: Mapped[str] = mapped_column(name_type(40), primary_key=True)
    # Indexed: list/rotate keys of an app.
    app_id: Mapped[str] = mapped_column(name_type(20), sa.ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(sa.String(64), default="")
    # HMAC verification needs the secret itself, so it is encrypted (AES-GCM), not hashed.
    secret_enc: Mapped[bytes] = mapped_column(sa.LargeBinary(512))
    scopes: Mapped[list[str]] = mapped_column(sa.JSON)
    allow_ips: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Operator keys call the admin API (instances) rather than one app's API.
    is_operator: Mapped[bool] = mapped_column(sa.Boolean, default=False)


class ClientKey(Base):
    __tablename__ = "client_keys"

    # kid is globally unique, but lookups always also check app_id (tenant isolation).
    kid: Mapped[str] = mapped_column(name_type(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(name_type(20), sa.ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    alg: Mapped[str] = mapped_column(sa.String(8))
    secret_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary(512), nullable=True)
    public_key_pem: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    def describe(self) -> dict[str, Any]:
        return {"kid": self.kid, "alg": self.alg, "revoked": self.revoked_at is not None}
