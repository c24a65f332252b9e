"""Durable publishing: one transaction assigns offsets, stores messages and outbox rows.

The 202 of the push API is sent only after this commit, so an accepted message is never lost.
Offsets come from `UPDATE channels SET top_offset = top_offset + n` under the row lock (MySQL's
repeatable read would lose updates with a read-then-write). Channels are locked in sorted order
so concurrent multi-channel pushes cannot deadlock.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from pushwire import ids
from pushwire.errors import BackendUnavailable
from pushwire.messaging.envelope import ENCODER, BusEnvelope, ClientMessage, Delivery, rfc3339
from pushwire.messaging.epochs import EpochSeed
from pushwire.storage.database import Database
from pushwire.storage.dialect import insert_ignore, rowcount, table_of, upsert_add, utcnow
from pushwire.storage.models import Channel, IdempotencyRecord, Message, OutboxEntry

OUTBOX_SHARDS = 16
DEADLOCK_RETRIES = 5
IDEMPOTENCY_WINDOW = dt.timedelta(hours=24)


class PublishRequest(msgspec.Struct, frozen=True):
    channels: tuple[str, ...]
    event: str
    data: msgspec.Raw
    idempotency_key: str | None = None
    replay_of: str | None = None
    traceparent: str | None = None


class PublishResult(msgspec.Struct, frozen=True):
    id: str
    deliveries: list[Delivery]
    duplicate: bool = False


class _IdemResult(msgspec.Struct):
    id: str
    deliveries: list[Delivery]


def outbox_shard(channel: str) -> int:
    """All rows of one channel share a shard, so the relay owning it keeps their order."""
    return zlib.crc32(channel.encode()) % OUTBOX_SHARDS


class CommitWatch(Protocol):
    """An observer's view of one publish transaction (tracing implements it: tracing/commit.py)."""

    # W3C traceparent that stands in for requests carrying none (console replays).
    traceparent: str | None

    def committed(self, results: Sequence[PublishResult]) -> None: ...

    def failed(self, exc: BaseException) -> None: ...


class PublishObserver(Protocol):
    """Told about each transaction before it begins; None means "not watching this one" (unsampled)."""

    def transaction(self, tenant_id: str, app_id: str, requests: Sequence[PublishRequest]) -> CommitWatch | None: ...


class Publisher:
    def __init__(self, db: Database, epochs: EpochSeed, *, observer: PublishObserver | None = None) -> None:
        """`observer` watches each transaction (Runtime passes `tracing.commits`); None: nothing does."""
        self.db = db
        self.epochs = epochs
        self.observer = observer

    async def publish(self, tenant_id: str, app_id: str, request: PublishRequest) -> PublishResult:
        return (await self.publish_many(tenant_id, app_id, [request]))[0]

    async def publish_many(
        self, tenant_id: str, app_id: str, requests: Sequence[PublishRequest]
    ) -> list[PublishResult]:
        """Publish all in one transaction (batching is how the push API goes fast); results in order."""
        watch = self.observer.transaction(tenant_id, app_id, requests) if self.observer is not None else None
        if watch is None:
            return await self._commit(tenant_id, app_id, requests, None)
        try:
            results = await self._commit(tenant_id, app_id, requests, watch.traceparent)
        except BaseException as exc:
            watch.failed(exc)
            raise
        watch.committed(results)
        return results

    async def _commit(
        self, tenant_id: str, app_id: str, requests: Sequence[PublishRequest], traceparent: str | None
    ) -> list[PublishResult]:
        for attempt in range(DEADLOCK_RETRIES):
            try:
                # Core on a bare connection: the ORM's unit of work costs more than the SQL here.
                async with self.db.engine.begin() as conn:
                    return await self._publish(conn, tenant_id, app_id, requests, traceparent)
            except (OperationalError, DBAPIError, OSError) as exc:
                # A deadlock rolled the whole transaction back, so retrying cannot double-publish.
                if _is_deadlock(exc) and attempt + 1 < DEADLOCK_RETRIES:
                    continue
                if isinstance(exc, DBAPIError) and not exc.connection_invalidated and not _is_unavailable(exc):
                    raise
                raise BackendUnavailable("database", str(exc).splitlines()[0][:200]) from None
        raise AssertionError("unreachable")

    async def _publish(
        self,
        s: AsyncConnection,
        tenant_id: str,
        app_id: str,
        requests: Sequence[PublishRequest],
        traceparent: str | None = None,
    ) -> list[PublishResult]:
        """`traceparent` (the db.commit span's) stands in for requests that carry none (replays)."""
        now = utcnow()
        results: list[PublishResult | None] = [None] * len(requests)
        fresh: list[tuple[int, str]] = []  # (index, message id) of requests that publish
        keys_in_batch: dict[str, int] = {}  # a key repeated inside one batch: later ones copy the first
        repeats: list[tuple[int, int]] = []

        for i, req in enumerate(requests):
            msg_id = ids.message_id()
            if req.idempotency_key is not None and req.idempotency_key in keys_in_batch:
                repeats.append((i, keys_in_batch[req.idempotency_key]))
                continue
            if req.idempotency_key is not None:
                keys_in_batch[req.idempotency_key] = i
                previous = await self._claim_key(s, app_id, req.idempotency_key, msg_id, now)
                if previous is not None:
                    results[i] = previous
                    continue
            fresh.append((i, msg_id))

        # Offsets: count per channel, bump each channel once, hand out the range in request order.
        per_channel: dict[str, int] = defaultdict(int)
        for i, _ in fresh:
            for ch in requests[i].channels:
                per_channel[ch] += 1
        next_offset: dict[str, tuple[int, str]] = {}
        if per_channel:
            tops = await self._bump(s, app_id, per_channel, now)
            for ch, n in per_channel.items():
                top, epoch = tops[ch]
                next_offset[ch] = (top - n + 1, epoch)

        ts = rfc3339(now)
        message_rows, outbox_rows = [], []
        for i, msg_id in fresh:
            req = requests[i]
            deliveries = []
            for ch in req.channels:
                offset, epoch = next_offset[ch]
                next_offset[ch] = (offset + 1, epoch)
                deliveries.append(Delivery(channel=ch, offset=offset, epoch=epoch))
                message = ClientMessage(
                    channel=ch, offset=offset, epoch=epoch, id=msg_id, event=req.event, data=req.data, ts=ts
                )
                message_rows.append(
                    {
                        "message_id": msg_id,
                        "app_id": app_id,
                        "channel": ch,
                        "offset": offset,
                        "event": req.event,
                        "data": bytes(req.data).decode(),
                        "idempotency_key": req.idempotency_key,
                        "replay_of": req.replay_of,
                        "created_at": now,
                    }
                )
                envelope = BusEnvelope(
                    tenant_id=tenant_id,
                    app_id=app_id,
                    message=message,
                    traceparent=req.traceparent or traceparent,
                    replay_of=req.replay_of,
                )
                outbox_rows.append(
                    {
                        "tenant_id": tenant_id,
                        "app_id": app_id,
                        "shard": outbox_shard(ch),
                        "channel": ch,
                        "offset": offset,
                        "payload": ENCODER.encode(envelope),
                        "created_at": now,
                    }
                )
            results[i] = PublishResult(id=msg_id, deliveries=deliveries)
            if req.idempotency_key is not None:
                idem = table_of(IdempotencyRecord)
                await s.execute(
                    idem.update()
                    .where(idem.c.app_id == app_id, idem.c.key == req.idempotency_key)
                    .values(result=msgspec.to_builtins(_IdemResult(id=msg_id, deliveries=deliveries)))
                )
        for i, first in repeats:
            earlier = results[first]
            assert earlier is not None
            results[i] = PublishResult(id=earlier.id, deliveries=earlier.deliveries, duplicate=True)
        if message_rows:
            await s.execute(table_of(Message).insert(), message_rows)
            await s.execute(table_of(OutboxEntry).insert(), outbox_rows)
        return [r for r in results if r is not None]

    async def _claim_key(
        self, s: AsyncConnection, app_id: str, key: str, msg_id: str, now: dt.datetime
    ) -> PublishResult | None:
        """Claim an idempotency key; on a live earlier claim return its result instead."""
        table = table_of(IdempotencyRecord)
        inserted = await s.execute(
            insert_ignore(table, self.db.dialect).values(
                app_id=app_id, key=key, message_id=msg_id, result={}, created_at=now
            )
        )
        if rowcount(inserted) == 1:
            return None
        row = (
            await s.execute(
                sa.select(table.c.result, table.c.created_at).where(table.c.app_id == app_id, table.c.key == key)
            )
        ).one()
        if now - row.created_at > IDEMPOTENCY_WINDOW:
            await s.execute(
                table.update()
                .where(table.c.app_id == app_id, table.c.key == key)
                .values(message_id=msg_id, result={}, created_at=now)
            )
            return None
        first = msgspec.convert(row.result, _IdemResult)
        return PublishResult(id=first.id, deliveries=first.deliveries, duplicate=True)

    async def _bump(
        self, s: AsyncConnection, app_id: str, counts: dict[str, int], now: dt.datetime
    ) -> dict[str, tuple[int, str]]:
        """Add `counts[channel]` to each channel's top offset in one statement; return (top, epoch).

        Rows are written in name order, so concurrent multi-channel pushes lock in the same order.
        A channel seen for the first time is created with its derived initial epoch.
        """
        names = sorted(counts)
        rows = [
            {
                "app_id": app_id,
                "name": ch,
                "epoch": self.epochs.initial(app_id, ch),
                "top_offset": counts[ch],
                "created_at": now,
            }
            for ch in names
        ]
        await s.execute(upsert_add(table_of(Channel), rows, ["app_id", "name"], "top_offset", self.db.dialect))
        ch = table_of(Channel)
        result = await s.execute(
            sa.select(ch.c.name, ch.c.top_offset, ch.c.epoch).where(ch.c.app_id == app_id, ch.c.name.in_(names))
        )
        return {name: (int(top), str(epoch)) for name, top, epoch in result}


def _is_deadlock(exc: BaseException) -> bool:
    # MySQL 1213 (deadlock) and 1205 (lock wait timeout); SQLite "database is locked".
    text = str(getattr(exc, "orig", exc))
    return "1213" in text or "1205" in text or "database is locked" in text


def _is_unavailable(exc: DBAPIError) -> bool:
    # MySQL client errors 2002/2003/2006/2013 and "server has gone away": the database is unreachable.
    text = str(exc.orig)
    return any(
        code in text for code in ("2002", "2003", "2006", "2013", "gone away", "Lost connection", "Can't connect")
    )
