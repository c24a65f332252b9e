"""Typed settings read from PUSHWIRE_* environment variables.

Validation happens here, once, so a bad value is reported as one line naming the setting
(the CLI turns SettingsError into exit code 2) instead of a traceback deep in start-up.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import uuid
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from pushwire.errors import SettingsError

DATABASE_SCHEMES = ("sqlite+aiosqlite", "mysql+asyncmy")
CACHE_SCHEMES = ("memory", "redis")
BUS_SCHEMES = ("memory", "kafka")
REGISTRY_SCHEMES = ("local", "etcd")
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./pushwire.db"


class LimitMaxima(msgspec.Struct, frozen=True, kw_only=True):
    """Platform ceilings for app limits: a tenant admin can set values up to these, never above;
    an operator sets them per deployment (PUSHWIRE_MAX_<LIMIT>). Field names match AppLimits."""

    max_token_lifetime: int = 7 * 86_400
    max_connections: int = 100_000
    max_connections_per_user: int = 100
    push_rate: int = 10_000
    push_burst: int = 20_000
    max_payload_bytes: int = 1_048_576
    hot_history_size: int = 10_000
    retention_days: int = 3_650


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = DEFAULT_DATABASE_URL
    cache_url: str = "memory://"
    bus_url: str = "memory://"
    registry_url: str = "local://"
    instance_id: str = ""
    secret_key: str = ""
    trusted_proxies: tuple[str, ...] = ()
    otlp_endpoint: str = ""
    # Share of pushes traced (0..1), decided by us per push (a caller's traceparent is only a link).
    # 1 % suits production (a traced push costs ~2x); `make run` (the single-node demo) traces all.
    trace_sample_ratio: float = 0.01
    # The address other instances and operators see for this one (shown in the registry).
    advertise_address: str = ""
    kafka_topic_prefix: str = "pushwire"
    kafka_partitions: int = 8
    kafka_replication: int = 1
    # Tansu (the local test broker) refuses idempotent producers; Apache Kafka should use them.
    kafka_idempotent: bool = False
    # The longest a consumer's empty fetch waits at the broker (ms): delivery latency on brokers
    # that do not answer a waiting fetch when records arrive (Tansu), fetches/s when idle.
    kafka_fetch_wait_ms: int = 10
    instance_ttl: int = 10
    heartbeat: int = 25
    metrics_token: str = ""
    demo: bool = False
    # uvicorn's access log: off by default (a line per request costs CPU, and URLs may carry tokens).
    access_log: bool = False
    limit_maxima: LimitMaxima = LimitMaxima()

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(c, strict=False) for c in self.trusted_proxies)


def _check_url(setting: str, value: str, schemes: tuple[str, ...]) -> None:
    try:
        parts = urlsplit(value)
        if parts.scheme != "kafka":  # kafka:// lists several host:port pairs, checked below
            _ = parts.port  # raises ValueError on a non-numeric port
    except ValueError as exc:
        raise SettingsError(setting, f"malformed URL {value!r} ({exc})") from None
    if parts.scheme not in schemes:
        raise SettingsError(
            setting,
            f"unknown scheme {parts.scheme!r} in {value!r}; expected one of {', '.join(s + '://' for s in schemes)}",
        )
    needs_host = parts.scheme in ("redis", "kafka", "etcd", "mysql+asyncmy")
    if needs_host and not parts.netloc.rpartition("@")[2]:
        raise SettingsError(setting, f"{value!r} names no host")
    if parts.scheme == "mysql+asyncmy" and not parts.path.strip("/"):
        raise SettingsError(setting, f"{value!r} names no database (mysql+asyncmy://user:pass@host:3306/pushwire)")
    if parts.scheme == "sqlite+aiosqlite" and not value.startswith("sqlite+aiosqlite:///"):
        raise SettingsError(
            setting, f"{value!r}: use sqlite+aiosqlite:///relative.db or sqlite+aiosqlite:////abs/path.db"
        )
    if parts.scheme == "kafka":
        for host in parts.netloc.split(","):
            h, _, port = host.rpartition(":")
            if not h or not port.isdigit():
                raise SettingsError(setting, f"{value!r}: each broker must be host:port")


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"{raw!r} is not an integer") from None
    if not low <= value <= high:
        raise SettingsError(name, f"{value} is outside {low}..{high}")
    return value


def _ratio(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, f"{raw!r} is not a number (use 0..1, e.g. 0.1 for 10 %)") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan and inf
        raise SettingsError(name, f"{raw} is outside 0..1")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(name, f"{raw!r} is not a boolean (true/false)")


def _secret_key(env: Mapping[str, str], database_url: str) -> str:
    """Use PUSHWIRE_SECRET_KEY; for single-node SQLite dev, generate one and keep it beside the database."""
    key = env.get("PUSHWIRE_SECRET_KEY", "")
    if key:
        if len(key) < 16:
            raise SettingsError("PUSHWIRE_SECRET_KEY", "must be at least 16 characters")
        return key
    if not database_url.startswith("sqlite+aiosqlite:///"):
        raise SettingsError(
            "PUSHWIRE_SECRET_KEY", "is required with a shared database (every instance must use the same key)"
        )
    db_path = database_url.removeprefix("sqlite+aiosqlite:///") or "pushwire.db"
    if db_path == ":memory:":
        return secrets.token_urlsafe(32)
    # Persisted so sessions, cursors and encrypted key secrets survive restarts.
    key_file = Path(db_path).with_suffix(".secret")
    if key_file.exists():
        return key_file.read_text().strip()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return key


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    db = env.get("PUSHWIRE_DATABASE_URL") or DEFAULT_DATABASE_URL
    cache = env.get("PUSHWIRE_CACHE_URL") or "memory://"
    bus = env.get("PUSHWIRE_BUS_URL") or "memory://"
    registry = env.get("PUSHWIRE_REGISTRY_URL") or "local://"
    _check_url("PUSHWIRE_DATABASE_URL", db, DATABASE_SCHEMES)
    _check_url("PUSHWIRE_CACHE_URL", cache, CACHE_SCHEMES)
    _check_url("PUSHWIRE_BUS_URL", bus, BUS_SCHEMES)
    _check_url("PUSHWIRE_REGISTRY_URL", registry, REGISTRY_SCHEMES)

    proxies = tuple(p.strip() for p in env.get("PUSHWIRE_TRUSTED_PROXIES", "").split(",") if p.strip())
    for cidr in proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise SettingsError("PUSHWIRE_TRUSTED_PROXIES", f"{cidr!r} is not an IP network (CIDR)") from None

    instance_id = env.get("PUSHWIRE_INSTANCE_ID") or f"pw-{uuid.uuid4().hex[:10]}"
    if not all(c.isalnum() or c in "-_." for c in instance_id) or len(instance_id) > 64:
        raise SettingsError("PUSHWIRE_INSTANCE_ID", "use 1..64 characters of [A-Za-z0-9._-]")

    otlp = env.get("PUSHWIRE_OTLP_ENDPOINT", "")
    if otlp and urlsplit(otlp).scheme not in ("http", "https"):
        raise SettingsError("PUSHWIRE_OTLP_ENDPOINT", f"{otlp!r} must be an http(s) URL")

    return Settings(
        database_url=db,
        cache_url=cache,
        bus_url=bus,
        registry_url=registry,
        instance_id=instance_id,
        secret_key=_secret_key(env, db),
        trusted_proxies=proxies,
        otlp_endpoint=otlp,
        trace_sample_ratio=_ratio(env, "PUSHWIRE_TRACE_SAMPLE_RATIO", 0.01),
        advertise_address=env.get("PUSHWIRE_ADVERTISE_ADDRESS", ""),
        kafka_topic_prefix=env.get("PUSHWIRE_KAFKA_TOPIC_PREFIX", "pushwire"),
        kafka_partitions=_int(env, "PUSHWIRE_KAFKA_PARTITIONS", 8, 1, 10_000),
        kafka_replication=_int(env, "PUSHWIRE_KAFKA_REPLICATION", 1, 1, 16),
        kafka_idempotent=_bool(env, "PUSHWIRE_KAFKA_IDEMPOTENT", False),
        kafka_fetch_wait_ms=_int(env, "PUSHWIRE_KAFKA_FETCH_WAIT_MS", 10, 1, 500),
        instance_ttl=_int(env, "PUSHWIRE_INSTANCE_TTL", 10, 2, 600),
        heartbeat=_int(env, "PUSHWIRE_HEARTBEAT", 25, 1, 600),
        metrics_token=env.get("PUSHWIRE_METRICS_TOKEN", ""),
        demo=_bool(env, "PUSHWIRE_DEMO", False),
        access_log=_bool(env, "PUSHWIRE_ACCESS_LOG", False),
        limit_maxima=_limit_maxima(env),
    )


def _limit_maxima(env: Mapping[str, str]) -> LimitMaxima:
    defaults = LimitMaxima()
    values = {}
    for name in LimitMaxima.__struct_fields__:
        var = "PUSHWIRE_MAX_" + name.upper().removeprefix("MAX_")
        values[name] = _int(env, var, getattr(defaults, name), 1, 2_000_000_000)
    return LimitMaxima(**values)
