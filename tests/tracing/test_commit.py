"""The Publisher's tracing observer (tracing/commit.py) on SQLite + memory and MariaDB + Redis:
one trace per transaction for a push or a batch; per-push traces when a transaction is shared;
nothing for unsampled pushes (no traceparent), and replays traced when our ratio draws them."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec
import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa

from pushwire.cache.base import Cache
from pushwire.cache.memory import MemoryCache
from pushwire.cache.redis import RedisCache
from pushwire.messaging.envelope import ENVELOPE_DECODER
from pushwire.messaging.epochs import EpochSeed
from pushwire.messaging.publish import Publisher, PublishRequest
from pushwire.settings import load_settings
from pushwire.storage.database import Database
from pushwire.storage.dialect import table_of
from pushwire.storage.models import OutboxEntry
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.service import TenancyService
from pushwire.tracing.context import forced_context, format_traceparent
from pushwire.tracing.provider import Tracing
from pushwire.tracing.records import SpanLink, StoredSpan
from pushwire.tracing.store import SpanStore
from tests.services import REDIS_URL, unique

SECRET = "test-secret-key-0123456789"


@dataclass
class Rig:
    publisher: Publisher
    db: Database
    tracing: Tracing
    store: SpanStore
    tenant_id: str
    app_id: str

    def push_parent(self) -> str:
        """A sampled push span's traceparent, as the push API puts it on each request."""
        span = self.tracing.tracer.start_span("push", context=forced_context())
        span.set_attribute("app_id", self.app_id)
        span.end()
        return format_traceparent(span.get_span_context())

    async def spans(self, traceparent: str) -> list[StoredSpan]:
        await self.store.flush()
        return await self.store.spans(traceparent.split("-")[1])

    async def envelope_traceparents(self) -> dict[str, str | None]:
        """Message id → the traceparent its outbox envelope carries (no relay runs here)."""
        outbox = table_of(OutboxEntry)
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(sa.select(outbox.c.payload).where(outbox.c.app_id == self.app_id))
            envelopes = [ENVELOPE_DECODER.decode(payload) for (payload,) in rows]
        return {e.message.id: e.traceparent for e in envelopes}


@pytest.fixture(params=["single", "mariadb+redis"])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    single = request.param == "single"
    url = request.getfixturevalue("sqlite_url" if single else "mysql_url")
    prefix = unique("trc:") + ":"
    cache: Cache = MemoryCache(prefix) if single else RedisCache(REDIS_URL, prefix)
    await cache.start()
    db = Database(url)
    await db.start()
    env = {"PUSHWIRE_DATABASE_URL": url, "PUSHWIRE_SECRET_KEY": SECRET, "PUSHWIRE_TRACE_SAMPLE_RATIO": "1"}
    tracing = Tracing(load_settings(env), cache)
    tenancy = TenancyService(db, SecretBox(SECRET))
    tenant = await tenancy.create_tenant(unique("t-"))
    app = await tenancy.create_app(tenant.tenant_id, "web")
    try:
        yield Rig(
            Publisher(db, EpochSeed(SECRET), observer=tracing.commits),
            db,
            tracing,
            tracing.store,
            tenant.tenant_id,
            app.app_id,
        )
    finally:
        await db.close()
        await cache.close()
        if not single:
            client = aioredis.Redis.from_url(REDIS_URL)
            keys = [k async for k in client.scan_iter(match=prefix + "*", count=500)]
            if keys:
                await client.delete(*keys)
            await client.aclose()


def _req(i: int, traceparent: str | None, replay_of: str | None = None) -> PublishRequest:
    return PublishRequest(
        channels=(f"room.{i}",), event="e", data=msgspec.Raw(b"1"), traceparent=traceparent, replay_of=replay_of
    )


def _unsampled() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"


async def test_a_batch_is_one_commit_in_its_push_trace(rig: Rig) -> None:
    parent = rig.push_parent()
    results = await rig.publisher.publish_many(rig.tenant_id, rig.app_id, [_req(i, parent) for i in range(3)])
    commits = [s for s in await rig.spans(parent) if s.name == "db.commit"]
    assert len(commits) == 1 and commits[0].parent_id == parent.split("-")[2]
    assert commits[0].attributes["messages"] == 3 and commits[0].links == []
    assert [await rig.store.trace_of(r.id) for r in results] == [parent.split("-")[1]] * 3


async def test_a_shared_transaction_keeps_each_push_in_its_own_trace(rig: Rig) -> None:
    a, b, quiet = rig.push_parent(), rig.push_parent(), _unsampled()
    results = await rig.publisher.publish_many(
        rig.tenant_id, rig.app_id, [_req(0, a), _req(1, quiet), _req(2, b), _req(3, b), _req(4, None)]
    )
    for unsampled in (results[1], results[4]):  # flags 00, or (as the push API sends) no traceparent
        assert await rig.store.trace_of(unsampled.id) is None  # not indexed, no span
    assert await rig.spans(quiet) == []
    # Nothing stands in for the push without a traceparent: the relay and routers skip it.
    assert (await rig.envelope_traceparents())[results[4].id] is None
    shared: set[SpanLink] = set()
    for parent, mine in ((a, [results[0]]), (b, results[2:4])):
        trace_id, push_id = parent.split("-")[1:3]
        assert [await rig.store.trace_of(r.id) for r in mine] == [trace_id] * len(mine)
        [commit] = [s for s in await rig.spans(parent) if s.name == "db.commit"]
        assert commit.parent_id == push_id and commit.attributes["messages"] == len(mine)
        assert commit.attributes["commit.messages"] == 5
        assert ("message_id" in commit.attributes) == (len(mine) == 1)
        [link] = commit.links
        assert (commit.attributes["commit.trace_id"], commit.attributes["commit.span_id"]) == (
            link.trace_id,
            link.span_id,
        )
        shared.add(link)
    [link] = shared
    [tx] = await rig.store.spans(link.trace_id)
    assert (tx.span_id, tx.parent_id, tx.attributes["messages"], tx.attributes["commit.traces"]) == (
        link.span_id,
        "",
        5,
        2,  # the sampled traces; unsampled pushes have none
    )
    assert {(lk.trace_id, lk.span_id) for lk in tx.links} == {tuple(p.split("-")[1:3]) for p in (a, b)}
    entries = {e.message_id: e.trace_id for e in await rig.store.recent(rig.app_id)}
    assert set(entries) == {results[0].id, results[2].id, results[3].id}


async def test_a_failed_shared_transaction_is_listed_failed_in_each_trace(rig: Rig) -> None:
    a, b = rig.push_parent(), rig.push_parent()
    with pytest.raises(Exception):  # the database's own error for a missing app
        await rig.publisher.publish_many(rig.tenant_id, "999999999", [_req(0, a), _req(1, b)])
    await rig.store.flush()
    failed = await rig.store.recent("999999999")
    assert sorted(e.trace_id for e in failed) == sorted(p.split("-")[1] for p in (a, b))
    assert all(e.failed and e.message_id == "" for e in failed)
    for parent in (a, b):
        [commit] = [s for s in await rig.spans(parent) if s.name == "db.commit"]
        assert commit.error and commit.links


async def test_a_transaction_of_unsampled_pushes_records_nothing(rig: Rig) -> None:
    results = await rig.publisher.publish_many(
        rig.tenant_id, rig.app_id, [_req(0, _unsampled()), _req(1, _unsampled())]
    )
    await rig.store.flush()
    assert rig.store.written == 0 and [await rig.store.trace_of(r.id) for r in results] == [None, None]


async def test_unsampled_pushes_without_traceparent_record_nothing(rig: Rig) -> None:
    """What the push API publishes for pushes it did not sample: a batch (one transaction) and single
    pushes alongside a sampled one (group commit)."""
    batch = await rig.publisher.publish_many(rig.tenant_id, rig.app_id, [_req(i, None) for i in range(3)])
    await rig.store.flush()
    assert rig.store.written == 0 and [await rig.store.trace_of(r.id) for r in batch] == [None] * 3
    traced = rig.push_parent()
    grouped = await rig.publisher.publish_many(
        rig.tenant_id, rig.app_id, [_req(0, None), _req(1, traced), _req(2, None)]
    )
    await rig.store.flush()
    assert [await rig.store.trace_of(r.id) for r in grouped] == [None, traced.split("-")[1], None]
    carried = await rig.envelope_traceparents()
    assert [carried[r.id] for r in [*batch, *grouped]] == [None, None, None, None, traced, None]


@pytest.mark.parametrize("ratio", [0.0, 1.0])
async def test_a_replay_is_traced_from_its_commit_when_our_ratio_draws_it(rig: Rig, ratio: float) -> None:
    rig.tracing.commits.ratio = ratio
    [result] = await rig.publisher.publish_many(rig.tenant_id, rig.app_id, [_req(0, None, replay_of="M0")])
    await rig.store.flush()
    carried = (await rig.envelope_traceparents())[result.id]
    if ratio == 0.0:
        assert rig.store.written == 0 and await rig.store.trace_of(result.id) is None and carried is None
        return
    assert carried is not None
    [commit] = await rig.spans(carried)
    assert (commit.name, commit.parent_id, commit.span_id) == ("db.commit", "", carried.split("-")[2])
    assert await rig.store.trace_of(result.id) == carried.split("-")[1]
