"""The relay role: the outbox relay (committed rows → hot history → bus) and the retention sweep.

It needs only settings, backends and tracing, so it also runs as a process of its own
(`pushwire relay`, RelayProcess below), which a deployment can give a core. Handing rows over is
a call within one process, so such a relay is handed nothing: it learns of every commit by
polling its shards, at the cluster cadence (IDLE_POLL, 50 ms). The 1 s SAFETY_POLL applies only
to a relay that is alone and handed its Publisher's rows (OutboxRelay._manage_locks).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field

from pushwire import __version__
from pushwire.messaging.hot_history import HotHistory
from pushwire.messaging.relay import OutboxRelay
from pushwire.messaging.retention import RetentionSweeper
from pushwire.registry.base import InstanceInfo
from pushwire.settings import Settings
from pushwire.tracing.provider import Tracing
from pushwire.wiring import Backends, build_backends, close_backends, start_backends

log = logging.getLogger(__name__)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass
class RelayRole:
    relay: OutboxRelay
    # Deletes messages past their app's retention (one instance at a time, under a registry lock).
    retention: RetentionSweeper

    @classmethod
    def build(cls, settings: Settings, backends: Backends, tracing: Tracing) -> RelayRole:
        db, registry = backends.database, backends.registry
        relay = OutboxRelay(
            db,
            backends.bus,
            HotHistory(backends.cache),
            registry,
            # Set by the rows a Publisher of this process hands over, and by notify().
            asyncio.Event(),
            settings.kafka_topic_prefix,
            tracing.tracer,
            settings.instance_id,
        )
        retention = RetentionSweeper(db, registry, max_retention_days=settings.limit_maxima.retention_days)
        return cls(relay=relay, retention=retention)

    async def start(self) -> None:
        await self.relay.start()
        await self.retention.start()

    async def stop(self) -> None:
        """Stop the sweep, then publish what is pending and free the outbox shards."""
        await self.retention.stop()
        await self.relay.stop()


@dataclass
class RelayProcess:
    """`pushwire relay`: the relay role over backends of its own, registered as an instance whose
    roles are ("relay",), so other instances count it (they poll at the cluster cadence) and
    `/api/v1/admin/instances` shows it."""

    settings: Settings
    backends: Backends
    tracing: Tracing
    role: RelayRole
    started_at: str = field(default_factory=utc_now)

    @classmethod
    def build(cls, settings: Settings, backends: Backends | None = None) -> RelayProcess:
        backends = backends or build_backends(settings)
        tracing = Tracing(settings, backends.cache)
        return cls(settings, backends, tracing, RelayRole.build(settings, backends, tracing))

    def instance_info(self) -> InstanceInfo:
        return InstanceInfo(
            id=self.settings.instance_id,
            address=self.settings.advertise_address,
            version=__version__,
            started_at=self.started_at,
            roles=("relay",),
        )

    async def start(self) -> None:
        """Raises wiring.StartupError (naming the setting) when a backend does not answer."""
        await start_backends(self.backends)
        try:
            await self.tracing.start()
            await self.backends.registry.register(self.instance_info(), ttl=self.settings.instance_ttl)
            await self.role.start()
        except BaseException:
            await close_backends(self.backends)
            raise

    async def stop(self) -> None:
        try:
            await self.role.stop()
            await self.backends.registry.deregister()
        except Exception:
            log.exception("error while stopping the relay")
        finally:
            with contextlib.suppress(Exception):
                await self.tracing.stop()  # last spans written before the cache closes
            await close_backends(self.backends)
