"""Batched connection slots (presence/slots.py) and channel-position reads (messaging/state_reads.py),
on SQLite and MariaDB: a connect storm shares transactions without ever passing a limit."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pushwire.cache.memory import MemoryCache
from pushwire.messaging.epochs import EpochSeed
from pushwire.messaging.history import ChannelState, History
from pushwire.messaging.state_reads import StateReads
from pushwire.presence.slots import APP_FULL, USER_FULL, RouteSlots
from pushwire.presence.store import PresenceStore
from pushwire.storage.database import Database
from tests.services import new_app_id


async def test_a_storm_of_takes_fills_the_app_limit_exactly_in_few_transactions(database: Database) -> None:
    app = await new_app_id(database)
    slots = RouteSlots(database, "inst-a")
    answers = await asyncio.gather(
        *(slots.take(f"s{i}-{app}", app, f"u{i}", "ws", max_app=30, max_user=5) for i in range(50))
    )
    assert answers[:30] == [None] * 30  # decided in arrival order
    assert answers[30:] == [APP_FULL] * 20
    assert slots.transactions <= 3  # shared, not one per connect
    presence = PresenceStore(database, MemoryCache())
    assert await presence.count(app) == 30
    await slots.stop()


async def test_the_per_user_limit_holds_within_one_batch_and_across_batches(database: Database) -> None:
    app = await new_app_id(database)
    slots = RouteSlots(database, "inst-a")
    first = await asyncio.gather(*(slots.take(f"a{i}-{app}", app, "bob", "ws", 100, 3) for i in range(5)))
    assert first == [None, None, None, USER_FULL, USER_FULL]
    assert await slots.take(f"b-{app}", app, "bob", "ws", 100, 3) == USER_FULL
    assert await slots.take(f"c-{app}", app, "carol", "ws", 100, 3) is None
    await slots.stop()


async def test_given_back_slots_are_free_for_the_next_take(database: Database) -> None:
    app = await new_app_id(database)
    slots = RouteSlots(database, "inst-a")
    assert await asyncio.gather(*(slots.take(f"g{i}-{app}", app, f"u{i}", "ws", 2, 1) for i in range(2))) == [
        None,
        None,
    ]
    assert await slots.take(f"g2-{app}", app, "u2", "ws", 2, 1) == APP_FULL
    # A give-back and a take queued together: the delete runs first, so the take gets the slot.
    back = asyncio.ensure_future(slots.give_back(f"g0-{app}", app, "u0"))
    took = asyncio.ensure_future(slots.take(f"g3-{app}", app, "u3", "ws", 2, 1))
    await back
    assert await took is None
    presence = PresenceStore(database, MemoryCache())
    [u3] = await presence.users(app, ["u3"])
    assert [r.session_id for r in u3.routes] == [f"g3-{app}"]
    assert await presence.count(app) == 2
    await slots.stop()


async def test_a_failed_transaction_fails_every_waiter_and_the_next_batch_still_runs(database: Database) -> None:
    app = await new_app_id(database)
    slots = RouteSlots(database, "inst-a")
    assert await slots.take(f"d-{app}", app, "u", "ws", 10, 10) is None
    slots.forget_others(app)  # decided by the database, not in memory
    # The same session id again breaks the primary key: that whole batch fails, loudly.
    results = await asyncio.gather(
        slots.take(f"d-{app}", app, "u", "ws", 10, 10),
        slots.take(f"e-{app}", app, "v", "ws", 10, 10),
        return_exceptions=True,
    )
    assert all(isinstance(r, Exception) for r in results)
    assert await slots.take(f"f-{app}", app, "w", "ws", 10, 10) is None
    await slots.stop()


async def _written(presence: PresenceStore, app: str, n: int) -> None:
    async with asyncio.timeout(5):
        while await presence.count(app) != n:
            await asyncio.sleep(0.02)


async def test_takes_decided_in_memory_are_written_behind_together(database: Database) -> None:
    app = await new_app_id(database)
    presence = PresenceStore(database, MemoryCache())
    slots = RouteSlots(database, "inst-a")
    assert await slots.take(f"m0-{app}", app, "u0", "ws", 5, 2) is None  # reads the others' total: 0
    before = slots.transactions
    # Decided at once from the in-memory counts, limits included; no transaction of their own.
    answers = [await slots.take(f"m{i}-{app}", app, "bob", "ws", 5, 2) for i in range(1, 6)]
    assert answers == [None, None, USER_FULL, USER_FULL, USER_FULL]
    assert [await slots.take(f"n{i}-{app}", app, f"v{i}", "ws", 5, 2) for i in range(3)] == [None, None, APP_FULL]
    await _written(presence, app, 5)
    assert slots.transactions - before == 1
    await slots.stop()


@pytest.mark.parametrize(("max_app", "admitted", "refusals"), [(25, 21, {USER_FULL}), (15, 15, {APP_FULL})])
async def test_takes_in_memory_and_takes_waiting_on_the_database_never_pass_a_limit(
    database: Database, max_app: int, admitted: int, refusals: set[str]
) -> None:
    app = await new_app_id(database)
    presence = PresenceStore(database, MemoryCache())
    slots = RouteSlots(database, "inst-a")
    slots.forget_others(app)
    # Waves overlap: the first waits on the database (nothing cached) while later ones arrive
    # with the others' total cached; users repeat across waves.
    waves = []
    for w in range(4):
        waves.append(
            asyncio.gather(*(slots.take(f"w{w}-{i}-{app}", app, f"u{i % 7}", "ws", max_app, 3) for i in range(12)))
        )
        for _ in range(w + 1):
            await asyncio.sleep(0)
    answers = [a for wave in await asyncio.gather(*waves) for a in wave]
    assert answers.count(None) == admitted  # 7 users × 3 each at most, and the app's limit
    assert set(answers) == {None} | refusals
    await _written(presence, app, admitted)
    await slots.stop()


async def test_a_route_given_back_before_it_was_written_is_never_written(database: Database) -> None:
    app = await new_app_id(database)
    presence = PresenceStore(database, MemoryCache())
    slots = RouteSlots(database, "inst-a")
    assert await slots.take(f"k0-{app}", app, "u0", "ws", 5, 2) is None
    assert await slots.take(f"k1-{app}", app, "u1", "ws", 5, 2) is None  # in memory
    await slots.give_back(f"k1-{app}", app, "u1")  # before the write behind ran
    assert await slots.take(f"k2-{app}", app, "u2", "ws", 5, 2) is None
    await _written(presence, app, 2)
    [u1, u2] = await presence.users(app, ["u1", "u2"])
    assert u1.routes == [] and [r.session_id for r in u2.routes] == [f"k2-{app}"]
    await slots.stop()


async def test_a_failed_write_behind_is_kept_and_retried(database: Database) -> None:
    app = await new_app_id(database)
    presence = PresenceStore(database, MemoryCache())
    slots = RouteSlots(database, "inst-a")
    assert await slots.take(f"r0-{app}", app, "u0", "ws", 5, 2) is None
    await _written(presence, app, 1)
    # A row already holds the next session's id: its write fails (primary key) until that row goes.
    await presence.add(f"r1-{app}", app, "x", "inst-b", "ws")
    assert await slots.take(f"r1-{app}", app, "u1", "ws", 5, 2) is None  # the others' total is still cached
    async with asyncio.timeout(5):
        while slots._retry == 0:
            await asyncio.sleep(0.01)
    await presence.remove(f"r1-{app}", app, "x")
    await _written(presence, app, 2)
    [u1] = await presence.users(app, ["u1"])
    assert [(r.session_id, r.instance_id) for r in u1.routes] == [(f"r1-{app}", "inst-a")]
    await slots.stop()


async def test_state_reads_share_one_query_and_answer_each_caller(database: Database) -> None:
    app = await new_app_id(database)
    reads = StateReads(History(database, EpochSeed("seed")))
    asked = [[f"personal:u{i}", "broadcast"] for i in range(40)]
    answers = await asyncio.gather(*(reads.states(app, chs) for chs in asked))
    assert [set(a) for a in answers] == [set(chs) for chs in asked]
    assert all(a["broadcast"].top == 0 for a in answers)
    assert reads.queries <= 3


async def test_a_failed_state_read_fails_its_callers_and_later_reads_work(database: Database) -> None:
    app = await new_app_id(database)

    class Broken(History):
        fail = True

        async def states(self, app_id: str, channels: Sequence[str]) -> dict[str, ChannelState]:
            if self.fail:
                raise RuntimeError("database gone")
            return await super().states(app_id, channels)

    history = Broken(database, EpochSeed("seed"))
    reads = StateReads(history)
    with pytest.raises(RuntimeError, match="database gone"):
        await reads.states(app, ["room"])
    history.fail = False
    assert (await reads.states(app, ["room"]))["room"].top == 0


async def test_a_caller_that_hangs_up_does_not_cancel_the_shared_read(database: Database) -> None:
    app = await new_app_id(database)
    reads = StateReads(History(database, EpochSeed("seed")))
    gone = asyncio.ensure_future(reads.states(app, ["broadcast", "room"]))
    stays = asyncio.ensure_future(reads.states(app, ["broadcast"]))
    await asyncio.sleep(0)
    gone.cancel()
    assert (await stays)["broadcast"].top == 0
    assert gone.cancelled()


async def test_other_instances_and_polls_count_too(database: Database) -> None:
    app = await new_app_id(database)
    presence = PresenceStore(database, MemoryCache())
    await presence.add(f"o1-{app}", app, "bob", "inst-b", "ws")  # another instance's connection
    await presence.add(f"o2-{app}", app, "bob", "inst-a", "longpoll")  # a poll of this instance
    slots = RouteSlots(database, "inst-a")
    assert await slots.take(f"a1-{app}", app, "bob", "ws", 10, 3) is None
    assert await slots.take(f"a2-{app}", app, "bob", "ws", 10, 3) == USER_FULL  # 1 mine + 2 others
    assert await slots.take(f"a3-{app}", app, "carol", "ws", 4, 3) is None
    assert await slots.take(f"a4-{app}", app, "dave", "ws", 4, 3) == APP_FULL
    # Given back: the slot is free at once, and the user's count leaves nothing behind.
    await slots.give_back(f"a1-{app}", app, "bob")
    assert (app, "bob") not in slots._mine_users
    assert await slots.take(f"a5-{app}", app, "dave", "ws", 4, 3) is None
    await slots.stop()
