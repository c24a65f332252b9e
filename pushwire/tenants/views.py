"""What tenancy services return: typed views, never ORM rows, so callers cannot lazy-load across tenants."""

from __future__ import annotations

import msgspec

SCOPES = ("push", "presence:read", "history:read")


class TenantView(msgspec.Struct, frozen=True):
    tenant_id: str
    name: str
    disabled: bool
    created_at: str


class AppLimits(msgspec.Struct, frozen=True, kw_only=True):
    max_token_lifetime: int = 86_400
    max_connections: int = 10_000
    max_connections_per_user: int = 10
    push_rate: int = 1_000
    push_burst: int = 2_000
    max_payload_bytes: int = 65_536
    hot_history_size: int = 1_000
    retention_days: int = 30


class AppView(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    tenant_id: str
    name: str
    enabled: bool
    allowed_origins: list[str]
    limits: AppLimits


class ServerKeyView(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    app_id: str
    label: str
    scopes: list[str]
    allow_ips: list[str]
    created_at: str
    revoked_at: str | None


class ClientKeyView(msgspec.Struct, frozen=True, kw_only=True):
    kid: str
    app_id: str
    alg: str
    created_at: str
    revoked_at: str | None


class KeySecret(msgspec.Struct, frozen=True):
    """Shown once, at creation; only the sealed form is stored."""

    key_id: str
    secret: str


class ClientKeySecret(msgspec.Struct, frozen=True, omit_defaults=True):
    kid: str
    secret: str | None = None


class AppCreated(msgspec.Struct, frozen=True):
    app_id: str
    server_key: KeySecret
    client_key: ClientKeySecret
