"""What /metrics, the sampler and the queue-depth page read from the running instance.

Connections and consumer lag are local and cheap (dictionaries in memory). The outbox backlog
is a database count shared by every instance; it is read at most once a second per instance,
however many scrapes, sampler ticks and console viewers ask for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sized
from typing import TYPE_CHECKING

import sqlalchemy as sa

from pushwire.bus.base import PartitionLag
from pushwire.metrics import process
from pushwire.metrics.registry import Labels, Metrics
from pushwire.storage.database import Database
from pushwire.storage.models import OutboxEntry

if TYPE_CHECKING:
    from pushwire.runtime import Runtime

log = logging.getLogger(__name__)

BACKLOG_MAX_AGE = 1.0
BACKLOG_TIMEOUT = 2.0


class OutboxBacklog:
    """Outbox rows per app (rows the relay has not produced to the bus yet), cached ≤ max_age seconds."""

    def __init__(self, db: Database, max_age: float = BACKLOG_MAX_AGE, clock: Callable[[], float] = time.monotonic):
        self.db, self.max_age, self.clock = db, max_age, clock
        # None: the last count failed (database down); the gauge is then absent rather than stale.
        self.by_app: dict[str, int] | None = None
        self.queries = 0
        self._at = -float("inf")
        self._lock = asyncio.Lock()

    async def read(self) -> dict[str, int] | None:
        if self.clock() - self._at < self.max_age:
            return self.by_app
        async with self._lock:  # concurrent callers share one query
            if self.clock() - self._at < self.max_age:
                return self.by_app
            try:
                async with asyncio.timeout(BACKLOG_TIMEOUT), self.db.session() as s:
                    q = sa.select(OutboxEntry.app_id, sa.func.count()).group_by(OutboxEntry.app_id)
                    rows = (await s.execute(q)).all()
                self.by_app = {str(app): int(n) for app, n in rows}
            except Exception as exc:  # noqa: BLE001 - reported as "unknown", never raised to a scrape
                log.warning("outbox backlog count failed: %s", (str(exc) or type(exc).__name__).splitlines()[0][:200])
                self.by_app = None
            finally:
                self.queries += 1
                self._at = self.clock()  # failures are cached too: a down database is not hammered
        return self.by_app

    def total(self) -> int | None:
        return None if self.by_app is None else sum(self.by_app.values())


class Probes:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.backlog = OutboxBacklog(runtime.backends.database)

    def connections_by_app(self) -> dict[str, int]:
        return dict(Counter(s.app_id for s in tuple(self.runtime.hub.sessions.values())))

    def lag(self) -> list[PartitionLag]:
        try:
            return self.runtime.router.lag()
        except Exception:
            log.exception("consumer lag unavailable")
            return []

    # -- gauge readers (sync: they read what is in memory or was refreshed before the scrape) --
    def _connections(self) -> Iterable[tuple[Labels, float]]:
        return (((app,), n) for app, n in self.connections_by_app().items())

    def _instance_connections(self) -> Iterable[tuple[Labels, float]]:
        return [((), self.runtime.hub.count())]

    def _lag(self) -> Iterable[tuple[Labels, float]]:
        return (((p.topic, str(p.partition)), p.lag) for p in self.lag())

    def _backlog_by_app(self) -> Iterable[tuple[Labels, float]]:
        return (((app,), n) for app, n in (self.backlog.by_app or {}).items())

    def _backlog_total(self) -> Iterable[tuple[Labels, float]]:
        total = self.backlog.total()
        return [] if total is None else [((), total)]

    def _database_connections(self) -> Iterable[tuple[Labels, float]]:
        counts = process.sqlalchemy_pool(self.runtime.backends.database.engine.pool)
        return (((state,), n) for state, n in counts.items())

    def _cache_connections(self) -> Iterable[tuple[Labels, float]]:
        pool = getattr(self.runtime.backends.cache, "connection_pool", None)  # Redis only
        counts = process.redis_pool(pool) if pool is not None else {}
        return (((state,), n) for state, n in counts.items())

    def _cache_keys(self) -> Iterable[tuple[Labels, float]]:
        cache = self.runtime.backends.cache
        return [((), len(cache))] if isinstance(cache, Sized) else []  # the memory engine's keys

    def _cache_evicted(self) -> Iterable[tuple[Labels, float]]:
        evicted = getattr(self.runtime.backends.cache, "evicted", None)  # the memory engine's cap
        return [] if evicted is None else [((), evicted)]

    def install(self, metrics: Metrics) -> None:
        process.install(metrics)
        metrics.gauge(
            "pushwire_database_connections",
            "Database connections in this instance's pool, in use or idle.",
            ["state"],
            self._database_connections,
        )
        metrics.gauge(
            "pushwire_cache_connections",
            "Redis connections in this instance's pool, in use or idle (absent with the memory cache).",
            ["state"],
            self._cache_connections,
        )
        metrics.gauge(
            "pushwire_cache_keys",
            "Keys held by the in-process memory cache, expired ones not yet swept included (memory cache only).",
            [],
            self._cache_keys,
        )
        metrics.gauge(
            "pushwire_cache_evicted_keys",
            "Long-lived keys the memory cache dropped to stay within its cap, since start (memory cache only).",
            [],
            self._cache_evicted,
        )
        metrics.gauge(
            "pushwire_connections", "Client connections on this instance, by app.", ["app"], self._connections
        )
        metrics.gauge(
            "pushwire_instance_connections", "Client connections on this instance.", [], self._instance_connections
        )
        metrics.gauge(
            "pushwire_consumer_lag",
            "Bus records not yet consumed by this instance's router.",
            ["topic", "partition"],
            self._lag,
        )
        metrics.gauge(
            "pushwire_outbox_backlog",
            "Outbox rows not yet produced to the bus (whole cluster).",
            [],
            self._backlog_total,
        )
        metrics.gauge(
            "pushwire_outbox_backlog_by_app",
            "Outbox rows not yet produced to the bus, by app.",
            ["app"],
            self._backlog_by_app,
        )
        metrics.before_scrape("outbox_backlog", self.backlog.read)
