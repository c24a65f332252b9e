"""The only module that imports concrete backends: it builds each one from its URL.

Everything else depends on the Protocols in cache/base.py, bus/base.py, registry/base.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

from pushwire.bus.base import Bus
from pushwire.cache.base import Cache
from pushwire.errors import BackendUnavailable
from pushwire.registry.base import Registry
from pushwire.settings import Settings
from pushwire.storage.database import Database


def build_cache(url: str, prefix: str = "pushwire:") -> Cache:
    parts = urlsplit(url)
    if parts.scheme == "memory":
        from pushwire.cache.memory import MemoryCache

        return MemoryCache(prefix=prefix)
    if parts.scheme == "redis":
        from pushwire.cache.redis import RedisCache

        return RedisCache(url, prefix=prefix)
    raise ValueError(f"unknown cache scheme {parts.scheme!r}")


def build_bus(url: str, settings: Settings) -> Bus:
    parts = urlsplit(url)
    if parts.scheme == "memory":
        from pushwire.bus.memory import MemoryBus

        return MemoryBus(default_partitions=settings.kafka_partitions)
    if parts.scheme == "kafka":
        from pushwire.bus.kafka import KafkaBus

        return KafkaBus(
            parts.netloc.split(","),
            client_id=settings.instance_id,
            idempotent=settings.kafka_idempotent,
            default_partitions=settings.kafka_partitions,
            replication=settings.kafka_replication,
            fetch_wait_ms=settings.kafka_fetch_wait_ms,
            # Each router is its group's only member: a short session keeps group joins quick.
            session_timeout_ms=6000,
        )
    raise ValueError(f"unknown bus scheme {parts.scheme!r}")


def build_registry(url: str) -> Registry:
    parts = urlsplit(url)
    if parts.scheme == "local":
        from pushwire.registry.local import LocalRegistry

        return LocalRegistry()
    if parts.scheme == "etcd":
        from pushwire.registry.etcd import EtcdRegistry

        prefix = parts.path if parts.path not in ("", "/") else "/pushwire/"
        return EtcdRegistry(parts.hostname or "127.0.0.1", parts.port or 2379, prefix=prefix.rstrip("/") + "/")
    raise ValueError(f"unknown registry scheme {parts.scheme!r}")


@dataclass(slots=True)
class Backends:
    database: Database
    cache: Cache
    bus: Bus
    registry: Registry

    def named(self) -> dict[str, tuple[str, object]]:
        """Backend name → (the setting that chose it, the backend)."""
        return {
            "database": ("PUSHWIRE_DATABASE_URL", self.database),
            "cache": ("PUSHWIRE_CACHE_URL", self.cache),
            "bus": ("PUSHWIRE_BUS_URL", self.bus),
            "registry": ("PUSHWIRE_REGISTRY_URL", self.registry),
        }


def build_backends(settings: Settings) -> Backends:
    return Backends(
        database=Database(settings.database_url),
        cache=build_cache(settings.cache_url),
        bus=build_bus(settings.bus_url, settings),
        registry=build_registry(settings.registry_url),
    )


class StartupError(Exception):
    """A backend could not be reached at start-up; names the setting to fix."""

    def __init__(self, setting: str, detail: str) -> None:
        super().__init__(f"{setting}: {detail}")
        self.setting = setting


async def start_backends(backends: Backends, timeout: float = 15.0) -> None:
    """Start every backend, closing the ones already started if another fails."""
    started: list[object] = []
    for name, (setting, backend) in backends.named().items():
        try:
            async with asyncio.timeout(timeout):
                await backend.start()  # type: ignore[attr-defined]
        except (BackendUnavailable, TimeoutError, OSError) as exc:
            for done in reversed(started):
                await _quiet_close(done)
            detail = exc.detail if isinstance(exc, BackendUnavailable) else (str(exc) or type(exc).__name__)
            raise StartupError(setting, f"{name} unreachable: {detail}") from None
        started.append(backend)


async def close_backends(backends: Backends) -> None:
    for _name, (_setting, backend) in reversed(list(backends.named().items())):
        await _quiet_close(backend)


async def _quiet_close(backend: object) -> None:
    try:
        await backend.close()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - closing is best effort at shutdown
        pass
