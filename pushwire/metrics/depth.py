"""The queue-depth view of one app: what is waiting where, now and over the last two minutes.

Hot-history lengths and the outbox backlog are read now (cache and database); connections,
message rates and consumer lag come from the samples every live instance stores once a second.
Lag is shown for the app's tenant topic only: other tenants' topics name other tenants.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import msgspec
import sqlalchemy as sa

from pushwire.cache.base import Cache
from pushwire.messaging.hot_history import hot_key
from pushwire.messaging.relay import topic_for
from pushwire.metrics.probes import Probes
from pushwire.metrics.sampler import Sample, read_samples
from pushwire.metrics.series import Spark, sparkline, timeline
from pushwire.storage.database import Database
from pushwire.storage.models import Channel
from pushwire.tenants.views import AppView

if TYPE_CHECKING:
    from pushwire.runtime import Runtime

BUSIEST = 20


class ChannelDepth(msgspec.Struct, frozen=True):
    channel: str
    top_offset: int  # messages ever published to the channel
    hot_length: int  # entries in its hot history now
    hot_cap: int  # the app's hot history size

    @property
    def fill(self) -> float:
        return min(1.0, self.hot_length / self.hot_cap) if self.hot_cap > 0 else 0.0


class LagRow(msgspec.Struct, frozen=True):
    instance: str
    topic: str
    partition: int
    position: int
    highwater: int
    lag: int
    spark: Spark


class InstanceRow(msgspec.Struct, frozen=True):
    instance: str
    samples: int
    last_ts: float | None
    connections: Spark
    rate_in: Spark
    rate_out: Spark


class QueueView(msgspec.Struct, frozen=True):
    app: AppView
    topic: str
    channels: list[ChannelDepth]
    backlog: int | None  # outbox rows of this app now; None when the count failed
    backlog_spark: Spark
    connections: Spark  # this app, all instances
    rate_in: Spark
    rate_out: Spark
    lag: list[LagRow]
    instances: list[InstanceRow]
    now: float


async def busiest_channels(
    db: Database, cache: Cache, app_id: str, cap: int, limit: int = BUSIEST
) -> list[ChannelDepth]:
    """The app's channels with the most messages ever, with their hot-history length now."""
    q = sa.select(Channel.name, Channel.top_offset).where(Channel.app_id == app_id)
    q = q.order_by(Channel.top_offset.desc(), Channel.name).limit(limit)
    async with db.session() as s:
        rows = (await s.execute(q)).all()
    lengths = await asyncio.gather(*(cache.list_length(hot_key(app_id, name)) for name, _ in rows))
    return [ChannelDepth(name, int(top), int(n), cap) for (name, top), n in zip(rows, lengths, strict=True)]


def _lag_rows(by_instance: dict[str, list[Sample]], topic: str, end: float) -> list[LagRow]:
    rows = []
    for instance, samples in sorted(by_instance.items()):
        if not samples:
            continue
        for p in (p for p in samples[-1].lag if p.topic == topic):

            def pick(s: Sample, part: int = p.partition) -> float | None:
                return next((float(q.lag) for q in s.lag if q.topic == topic and q.partition == part), None)

            spark = sparkline(timeline({instance: samples}, pick, end=end))
            rows.append(LagRow(instance, p.topic, p.partition, p.position, p.highwater, p.lag, spark))
    return sorted(rows, key=lambda r: (r.instance, r.partition))


def _instance_rows(by_instance: dict[str, list[Sample]], app_id: str, end: float) -> list[InstanceRow]:
    rows = []
    for instance, samples in sorted(by_instance.items()):
        one = {instance: samples}
        rows.append(
            InstanceRow(
                instance,
                len(samples),
                samples[-1].ts if samples else None,
                sparkline(timeline(one, lambda s: s.connections.get(app_id, 0), end=end)),
                sparkline(timeline(one, lambda s: s.rate_in.get(app_id, 0.0), end=end)),
                sparkline(timeline(one, lambda s: s.rate_out.get(app_id, 0.0), end=end)),
            )
        )
    return rows


async def queue_view(runtime: Runtime, probes: Probes, app: AppView) -> QueueView:
    app_id = app.app_id
    # A `pushwire relay` process serves no clients and keeps no samples: no row of its own.
    instances = [i.id for i in await runtime.backends.registry.instances() if i.roles != ("relay",)]
    channels, by_app, by_instance = await asyncio.gather(
        busiest_channels(runtime.backends.database, runtime.backends.cache, app_id, app.limits.hot_history_size),
        probes.backlog.read(),
        read_samples(runtime.backends.cache, instances),
    )

    def backlog(s: Sample) -> float | None:
        return None if s.outbox is None else s.outbox.get(app_id, 0)

    end = time.time()  # one time axis for every line on the page
    # Every instance counts the same table: combine by max, not sum.
    backlog_series = timeline(by_instance, backlog, end=end, combine=max)
    topic = topic_for(runtime.settings.kafka_topic_prefix, app.tenant_id)
    return QueueView(
        app=app,
        topic=topic,
        channels=channels,
        backlog=None if by_app is None else by_app.get(app_id, 0),
        backlog_spark=sparkline(backlog_series),
        connections=sparkline(timeline(by_instance, lambda s: s.connections.get(app_id, 0), end=end)),
        rate_in=sparkline(timeline(by_instance, lambda s: s.rate_in.get(app_id, 0.0), end=end)),
        rate_out=sparkline(timeline(by_instance, lambda s: s.rate_out.get(app_id, 0.0), end=end)),
        lag=_lag_rows(by_instance, topic, end),
        instances=_instance_rows(by_instance, app_id, end),
        now=end,
    )
