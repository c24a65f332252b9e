"""Once a second, this instance's figures go to the shared cache, so any instance's console can
chart every instance: connections and message rates per app, consumer lag, outbox backlog.

Each instance writes only its own list `stats:{instance_id}` (newest first, capped, with a TTL so
a dead instance's samples fade away). Cache failures are logged and the tick skipped; the
counter snapshot is kept, so the next sample's rates cover the skipped second too.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable, Iterable, Mapping

import msgspec

from pushwire.cache.base import Cache
from pushwire.metrics.probes import Probes
from pushwire.metrics.registry import Labels, Metrics

log = logging.getLogger(__name__)

SAMPLES_KEPT = 120  # two minutes at one a second
SAMPLE_TTL = 300
MAX_APPS = 500  # per map in one sample: the busiest apps; keeps a sample small with many tenants
STOP_GRACE = 5.0


class LagPoint(msgspec.Struct, frozen=True, array_like=True):
    topic: str
    partition: int
    position: int
    highwater: int
    lag: int


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    ts: float  # unix seconds
    instance: str
    connections: dict[str, int] = {}
    rate_in: dict[str, float] = {}  # messages/s accepted by this instance's push API, by app
    rate_out: dict[str, float] = {}  # message frames/s queued to this instance's connections, by app
    lag: list[LagPoint] = []
    outbox: dict[str, int] | None = None  # rows per app; None when the count failed


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Sample)


def stats_key(instance_id: str) -> str:
    return f"stats:{instance_id}"


def _top(values: Mapping[str, float], n: int = MAX_APPS) -> dict[str, float]:
    if len(values) <= n:
        return dict(values)
    return dict(heapq.nlargest(n, values.items(), key=lambda kv: kv[1]))


def rates(now: Mapping[Labels, float], before: Mapping[Labels, float], seconds: float) -> dict[str, float]:
    """Per-app rate from two snapshots of a counter labelled by app."""
    out: dict[str, float] = {}
    for labels, value in now.items():
        delta = value - before.get(labels, 0)
        if delta > 0:
            out[labels[0]] = round(delta / seconds, 3)
    return out


class Sampler:
    def __init__(
        self,
        probes: Probes,
        metrics: Metrics,
        cache: Cache,
        instance_id: str,
        *,
        interval: float = 1.0,
        kept: int = SAMPLES_KEPT,
        ttl: float = SAMPLE_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.probes, self.metrics, self.cache, self.instance_id = probes, metrics, cache, instance_id
        self.interval, self.kept, self.ttl, self.clock = interval, kept, ttl, clock
        self.recorded = 0
        self.failures = 0
        self._prev = (clock(), dict(metrics.messages_in.values), dict(metrics.messages_out.values))
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def record(self) -> Sample | None:
        """Take one sample and store it; None (logged) when that failed."""
        now = self.clock()
        snapshot = (now, dict(self.metrics.messages_in.values), dict(self.metrics.messages_out.values))
        try:
            seconds = max(now - self._prev[0], 1e-3)
            outbox = await self.probes.backlog.read()
            sample = Sample(
                ts=now,
                instance=self.instance_id,
                connections={k: int(v) for k, v in _top(self.probes.connections_by_app()).items()},
                rate_in=_top(rates(snapshot[1], self._prev[1], seconds)),
                rate_out=_top(rates(snapshot[2], self._prev[2], seconds)),
                lag=[LagPoint(p.topic, p.partition, p.position, p.highwater, p.lag) for p in self.probes.lag()],
                outbox=None if outbox is None else {k: int(v) for k, v in _top(outbox).items()},
            )
            # No timeout of ours around the write: the cache bounds its own calls (see stop()).
            await self.cache.list_push_capped(
                stats_key(self.instance_id), [_ENCODER.encode(sample)], self.kept, ttl=self.ttl
            )
        except Exception as exc:  # noqa: BLE001 - the loop outlives any cache outage
            self.failures += 1
            log.warning("stats sample not stored: %s", (str(exc) or type(exc).__name__).splitlines()[0][:200])
            return None
        self._prev = snapshot
        self.recorded += 1
        return sample

    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="stats-sampler")

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Let the tick in progress finish: cancelling a Redis call mid-flight can wedge the shared pool."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            task.cancel()  # stuck beyond the cache's own timeouts: give up on it
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += self.interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), max(0.0, due - loop.time()))
            if self._stopping.is_set():
                return
            if loop.time() - due > self.interval:
                due = loop.time()  # fell behind (a slow write): resume the beat, never burst to catch up
            await self.record()


def decode_samples(raw: Iterable[bytes]) -> list[Sample]:
    """Oldest first, from the newest-first list; undecodable entries (another version) are skipped."""
    out = []
    for item in raw:
        try:
            out.append(_DECODER.decode(item))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    out.reverse()
    return out


async def read_samples(cache: Cache, instance_ids: Iterable[str], kept: int = SAMPLES_KEPT) -> dict[str, list[Sample]]:
    """Every listed instance's recent samples, oldest first; an instance whose list fails reads as empty."""
    ids = list(instance_ids)

    async def one(instance_id: str) -> list[Sample]:
        try:
            return decode_samples(await cache.list_range(stats_key(instance_id), 0, kept - 1))
        except Exception as exc:  # noqa: BLE001 - the page shows what it has
            log.warning("stats of %s unreadable: %s", instance_id, exc)
            return []

    return dict(zip(ids, await asyncio.gather(*(one(i) for i in ids)), strict=True))
