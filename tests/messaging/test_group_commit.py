"""Group commit on SQLite and MariaDB: concurrent pushes share transactions, offsets stay exact, failures reach every caller."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from pushwire.errors import BackendUnavailable
from pushwire.messaging.epochs import EpochSeed
from pushwire.messaging.group_commit import MAX_INFLIGHT, GroupCommit
from pushwire.messaging.publish import Publisher, PublishRequest
from pushwire.metrics import Metrics
from pushwire.storage.database import Database
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.service import TenancyService
from tests.services import unique

SECRET = "test-secret-key-0123456789"


def _req(i: int, channel: str = "room.g") -> PublishRequest:
    return PublishRequest(channels=(channel,), event="e", data=msgspec.Raw(str(i).encode()))


async def _app(database: Database) -> tuple[str, str]:
    tenancy = TenancyService(database, SecretBox(SECRET))
    tenant = await tenancy.create_tenant(unique("t-"))
    app = await tenancy.create_app(tenant.tenant_id, "web")
    return tenant.tenant_id, app.app_id


async def test_concurrent_pushes_share_transactions_and_offsets_stay_exact(database: Database) -> None:
    tenant_id, app_id = await _app(database)
    group = GroupCommit(Publisher(database, EpochSeed(SECRET)))
    results = await asyncio.gather(*(group.publish(tenant_id, app_id, _req(i)) for i in range(300)))
    offsets = sorted(r.deliveries[0].offset for r in results)
    assert offsets == list(range(1, 301))
    assert len({r.id for r in results}) == 300
    assert group.transactions < 300 and group.grouped > 0  # they did share
    # An idle server commits a lone push at once, alone.
    before = group.transactions
    lone = await group.publish(tenant_id, app_id, _req(0))
    assert lone.deliveries[0].offset == 301 and group.transactions == before + 1


async def test_a_failed_transaction_fails_each_of_its_callers_and_publishes_none(database: Database) -> None:
    tenant_id, app_id = await _app(database)
    group = GroupCommit(Publisher(database, EpochSeed(SECRET)), max_inflight=1)
    # Queued behind a first push, the three to an app that does not exist share one failing transaction.
    first = asyncio.ensure_future(group.publish(tenant_id, app_id, _req(0)))
    doomed = [asyncio.ensure_future(group.publish(tenant_id, "999999999", _req(i))) for i in range(3)]
    fine = asyncio.ensure_future(group.publish(tenant_id, app_id, _req(9)))
    outcomes = await asyncio.gather(first, *doomed, fine, return_exceptions=True)
    assert all(isinstance(o, Exception) for o in outcomes[1:4]), outcomes
    assert [o.deliveries[0].offset for o in (outcomes[0], outcomes[4])] == [1, 2]  # type: ignore[union-attr]


async def test_a_caller_that_hung_up_before_its_turn_publishes_nothing(database: Database) -> None:
    tenant_id, app_id = await _app(database)
    group = GroupCommit(Publisher(database, EpochSeed(SECRET)), max_inflight=1)
    first = asyncio.ensure_future(group.publish(tenant_id, app_id, _req(0)))
    gone = asyncio.ensure_future(group.publish(tenant_id, app_id, _req(1)))
    await asyncio.sleep(0)
    gone.cancel()
    last = await group.publish(tenant_id, app_id, _req(2))
    assert (await first).deliveries[0].offset == 1
    assert last.deliveries[0].offset == 2
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_a_transaction_cancelled_at_shutdown_answers_its_callers(database: Database) -> None:
    tenant_id, app_id = await _app(database)
    group = GroupCommit(Publisher(database, EpochSeed(SECRET)))
    waiting = asyncio.ensure_future(group.publish(tenant_id, app_id, _req(0)))
    await asyncio.sleep(0)  # the push is queued and its transaction task created, not yet begun
    for task in list(group._tasks):
        task.cancel()
    with pytest.raises(BackendUnavailable):
        await asyncio.wait_for(waiting, 5)


async def test_pushes_per_transaction_are_reported_in_metrics(database: Database) -> None:
    tenant_id, app_id = await _app(database)
    metrics = Metrics()
    group = GroupCommit(Publisher(database, EpochSeed(SECRET)), on_transaction=metrics.push_transaction)
    await asyncio.gather(*(group.publish(tenant_id, app_id, _req(i)) for i in range(50)))
    await group.publish(tenant_id, app_id, _req(50))  # alone: a transaction of one
    histogram = metrics.push_transactions
    assert (histogram.count, histogram.sum) == (group.transactions, 51)
    assert histogram.count < 51 and histogram.counts[0] >= 1  # shared transactions, and the lone one
    text = metrics.exposition()
    assert "# TYPE pushwire_push_transaction_pushes histogram" in text
    assert f"pushwire_push_transaction_pushes_count {group.transactions}" in text
    assert 'pushwire_push_transaction_pushes_bucket{le="+Inf"} ' + str(group.transactions) in text


async def test_sqlite_commits_one_transaction_at_a_time(database: Database) -> None:
    group = GroupCommit(Publisher(database, EpochSeed(SECRET)))
    assert group.max_inflight == (1 if database.dialect == "sqlite" else MAX_INFLIGHT)
