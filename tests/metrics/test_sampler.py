"""The per-instance sampler: typed samples in the shared cache (memory and Redis), bounded, with rates."""

from __future__ import annotations

import asyncio

from pushwire.cache.base import Cache
from pushwire.metrics.probes import OutboxBacklog, Probes
from pushwire.metrics.sampler import Sample, Sampler, read_samples, stats_key
from pushwire.runtime import Runtime
from pushwire.storage.database import Database
from pushwire.storage.models import OutboxEntry
from pushwire.wiring import build_cache
from tests.services import unique


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _outbox_rows(db: Database, app_id: str, n: int) -> None:
    async with db.session() as s:
        s.add_all(
            OutboxEntry(tenant_id="t1", app_id=app_id, shard=0, channel="room.a", offset=i, payload=b"x")
            for i in range(1, n + 1)
        )
        await s.commit()


async def test_samples_land_in_the_cache_bounded_with_rates_from_counter_deltas(runtime: Runtime, cache: Cache) -> None:
    clock, iid = Clock(), unique("inst-")
    await _outbox_rows(runtime.backends.database, "111", 3)
    sampler = Sampler(Probes(runtime), runtime.metrics, cache, iid, kept=5, clock=clock)
    runtime.metrics.message_in("111", 10)
    runtime.metrics.message_out("111", 30)
    runtime.metrics.message_in("222", 1)
    clock.now += 2
    first = await sampler.record()
    assert first is not None and first.instance == iid and first.ts == clock.now
    assert first.rate_in == {"111": 5.0, "222": 0.5} and first.rate_out == {"111": 15.0}
    assert first.outbox == {"111": 3} and first.connections == {} and first.lag == []
    clock.now += 1
    idle = await sampler.record()
    assert idle is not None and idle.rate_in == {} and idle.rate_out == {}
    for _ in range(6):
        clock.now += 1
        runtime.metrics.message_in("111", 4)
        await sampler.record()
    assert await cache.list_length(stats_key(iid)) == 5  # capped: the oldest fell off
    stored = await read_samples(cache, [iid, unique("gone-")])
    assert list(stored) and all(isinstance(s, Sample) for s in stored[iid])
    assert [s.ts for s in stored[iid]] == [clock.now - i for i in range(4, -1, -1)]  # oldest first
    assert stored[iid][-1].rate_in == {"111": 4.0}
    assert [v for k, v in stored.items() if k != iid] == [[]]  # an instance without samples reads as empty
    assert sampler.recorded == 8 and sampler.failures == 0


async def test_a_cache_failure_is_skipped_and_the_next_rate_covers_the_gap(runtime: Runtime, cache: Cache) -> None:
    clock, iid = Clock(), unique("inst-")
    down = build_cache("redis://127.0.0.1:1/0", prefix="pwtest:")  # nothing listens there
    sampler = Sampler(Probes(runtime), runtime.metrics, down, iid, clock=clock)
    runtime.metrics.message_in("111", 6)
    clock.now += 1
    assert await sampler.record() is None and sampler.failures == 1
    sampler.cache = cache
    runtime.metrics.message_in("111", 4)
    clock.now += 1
    sample = await sampler.record()
    assert sample is not None and sample.rate_in == {"111": 5.0}  # 10 messages over the 2 s since the last stored
    assert [s.ts for s in (await read_samples(cache, [iid]))[iid]] == [clock.now]


async def test_the_loop_keeps_running_through_failures_and_stops(runtime: Runtime, cache: Cache) -> None:
    iid = unique("inst-")
    down = build_cache("redis://127.0.0.1:1/0", prefix="pwtest:")
    sampler = Sampler(Probes(runtime), runtime.metrics, down, iid, interval=0.05)
    await sampler.start()
    await asyncio.sleep(0.4)
    assert sampler.failures >= 3 and sampler._task is not None and not sampler._task.done()
    sampler.cache = cache
    failures = sampler.failures
    await asyncio.sleep(0.4)
    await sampler.stop()
    assert sampler.recorded >= 3 and sampler.failures - failures <= 1
    assert await cache.list_length(stats_key(iid)) == sampler.recorded  # stop() lets the last write finish
    await sampler.stop()  # idempotent


async def test_outbox_backlog_is_one_query_per_second_and_none_when_the_database_is_down(runtime: Runtime) -> None:
    clock = Clock()
    backlog = OutboxBacklog(runtime.backends.database, clock=clock)
    assert await backlog.read() == {} and backlog.total() == 0
    await _outbox_rows(runtime.backends.database, "333", 2)
    assert await asyncio.gather(*(backlog.read() for _ in range(5))) == [{}] * 5  # cached
    assert backlog.queries == 1
    clock.now += 1.01
    assert await backlog.read() == {"333": 2} and backlog.total() == 2 and backlog.queries == 2
    down = Database("mysql+asyncmy://root:@127.0.0.1:1/nothing")
    try:
        dead = OutboxBacklog(down, clock=clock)
        assert await dead.read() is None and dead.total() is None
        assert await dead.read() is None and dead.queries == 1  # the failure is cached too
    finally:
        await down.close()
