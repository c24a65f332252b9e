"""Durable publishing: one transaction assigns offsets, stores messages and outbox rows.

The 202 of the push API is sent only after this commit, so an accepted message is never lost.
Offsets come from `UPDATE channels SET top_offset = top_offset + n` under the row lock (MySQL's
repeatable read would lose updates with a read-then-write). Channels are locked in sorted order
so concurrent multi-channel pushes cannot deadlock.

A transaction costs its round trips and SQLAlchemy's per-execute work more than its rows, so
statements are built once (their compiled form is then cached) and each kind of row goes in one
executemany (one multi-row INSERT on both drivers): without idempotency keys a transaction is
the channel bump (with RETURNING where the database has it), the messages, the outbox rows and
the commit. The committed outbox rows are then handed to this instance's relay (`handoff`), so
it publishes them without reading them back.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from pushwire import ids
from pushwire.errors import BackendUnavailable
from pushwire.messaging.envelope import ENCODER, ClientMessage, Committed, Delivery, OutboxEnvelope, rfc3339
from pushwire.messaging.epochs import EpochSeed
from pushwire.storage import raw
from pushwire.storage.database import Database
from pushwire.storage.dialect import insert_ignore, rowcount, table_of, upsert, upsert_params, utcnow
from pushwire.storage.models import Channel, IdempotencyRecord, Message, OutboxEntry

OUTBOX_SHARDS = 16
DEADLOCK_RETRIES = 5
IDEMPOTENCY_WINDOW = dt.timedelta(hours=24)
# SQLAlchemy's for the statements it runs, the drivers' own for the raw ones.
_DATABASE_ERRORS: tuple[type[Exception], ...] = (OperationalError, DBAPIError, OSError, *raw.DRIVER_ERRORS)

_CHANNELS = table_of(Channel)
_MESSAGES = table_of(Message)
_OUTBOX = table_of(OutboxEntry)
_KEYS = table_of(IdempotencyRecord)

# The rows of a transaction go in as one multi-row INSERT per table, on the driver (storage/raw.py).
_MESSAGE_COLUMNS = (
    "message_id", "app_id", "channel", "offset", "event", "data", "idempotency_key", "replay_of", "created_at"
)  # fmt: skip
_OUTBOX_COLUMNS = ("tenant_id", "app_id", "shard", "channel", "offset", "payload", "created_at")
# (channel, offset) places each returned id: RETURNING's row order is not promised.
_OUTBOX_RETURNING = ("id", "channel", "offset")
_READ_KEYS = sa.select(_KEYS.c.key, _KEYS.c.message_id, _KEYS.c.result, _KEYS.c.created_at).where(
    _KEYS.c.app_id == sa.bindparam("app_id"), _KEYS.c.key.in_(sa.bindparam("keys", expanding=True))
)
_RENEW_KEY = (
    _KEYS.update()
    .where(_KEYS.c.app_id == sa.bindparam("w_app"), _KEYS.c.key == sa.bindparam("w_key"))
    .values(message_id=sa.bindparam("w_message"), created_at=sa.bindparam("w_at"))
)


class PublishRequest(msgspec.Struct, frozen=True):
    channels: tuple[str, ...]
    event: str
    data: msgspec.Raw
    idempotency_key: str | None = None
    replay_of: str | None = None
    traceparent: str | None = None
    # Pusher protocol (ClientMessage): the connection excluded, and a client event's sender.
    socket_id: str | None = None
    user_id: str | None = None


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


_CLAIM_KEY = insert_ignore(_KEYS, "")
_BUMP_COLUMNS = ("app_id", "name", "epoch", "top_offset", "created_at")
_TOP_COLUMNS = ("name", "top_offset", "epoch")
_KEY_COLUMNS = ("app_id", "key", "message_id", "result", "created_at")


def _bump_sql(dialect: Dialect, rows: int) -> str:
    # On a conflict RETURNING answers the row as updated: the bump and its read-back in one trip.
    returning = _TOP_COLUMNS if dialect.insert_returning else ()
    return raw.upsert_sql(dialect, _CHANNELS.name, _BUMP_COLUMNS, ("app_id", "name"), rows, ("top_offset",), returning)


class Publisher:
    def __init__(
        self,
        db: Database,
        epochs: EpochSeed,
        *,
        observer: PublishObserver | None = None,
        handoff: Callable[[list[Committed]], None] | None = None,
    ) -> None:
        """`observer` watches each transaction (Runtime passes `tracing.commits`); None: nothing does.
        `handoff` receives each transaction's outbox rows after its commit (Runtime: the relay's);
        it is not called where the database cannot return the rows' ids (MySQL: the relay polls)."""
        self.db = db
        self.epochs = epochs
        self.observer = observer
        self.handoff = handoff

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
                async with self.db.writing() as conn:
                    results, committed = await self._publish(conn, tenant_id, app_id, requests, traceparent)
            except _DATABASE_ERRORS as exc:
                # A deadlock rolled the whole transaction back, so retrying cannot double-publish.
                if _is_deadlock(exc) and attempt + 1 < DEADLOCK_RETRIES:
                    continue
                if isinstance(exc, DBAPIError) and not exc.connection_invalidated and not _is_unavailable(exc):
                    raise
                if isinstance(exc, raw.DRIVER_ERRORS) and not _is_unavailable(exc):
                    raise
                raise BackendUnavailable("database", str(exc).splitlines()[0][:200]) from None
            if committed and self.handoff is not None:
                self.handoff(committed)
            return results
        raise AssertionError("unreachable")

    async def _publish(
        self,
        conn: AsyncConnection,
        tenant_id: str,
        app_id: str,
        requests: Sequence[PublishRequest],
        traceparent: str | None = None,
    ) -> tuple[list[PublishResult], list[Committed]]:
        """`traceparent` (the db.commit span's) stands in for requests that carry none (replays).

        Returns the results in request order and the outbox rows to hand off (none without ids)."""
        now = utcnow()
        stored_now = raw.stored_time(conn.dialect, now)  # as the raw statements take it, made once
        results: list[PublishResult | None] = [None] * len(requests)
        first_of_key: dict[str, int] = {}  # a key repeated inside one batch: later ones copy the first
        repeats: list[tuple[int, int]] = []
        message_ids = ids.message_ids(len(requests))
        for i, req in enumerate(requests):
            if req.idempotency_key is None:
                continue
            if req.idempotency_key in first_of_key:
                repeats.append((i, first_of_key[req.idempotency_key]))
            else:
                first_of_key[req.idempotency_key] = i
        if first_of_key:
            for key, previous in (await self._claim_keys(conn, app_id, first_of_key, message_ids, now)).items():
                results[first_of_key[key]] = previous
        repeated = {i for i, _ in repeats}
        fresh = [i for i in range(len(requests)) if results[i] is None and i not in repeated]

        # Offsets: count per channel, bump each channel once, hand out the range in request order.
        per_channel: dict[str, int] = defaultdict(int)
        for i in fresh:
            for ch in requests[i].channels:
                per_channel[ch] += 1
        next_offset: dict[str, tuple[int, str]] = {}
        if per_channel:
            tops = await self._bump(conn, app_id, per_channel, stored_now)
            for ch, n in per_channel.items():
                top, epoch = tops[ch]
                next_offset[ch] = (top - n + 1, epoch)

        ts = rfc3339(now)
        message_rows: list[dict[str, Any]] = []
        outbox_rows: list[dict[str, Any]] = []
        staged: list[Committed] = []
        key_results: list[dict[str, Any]] = []
        for i in fresh:
            req, msg_id = requests[i], message_ids[i]
            data = bytes(req.data).decode()
            trace = req.traceparent or traceparent
            deliveries = []
            for ch in req.channels:
                offset, epoch = next_offset[ch]
                next_offset[ch] = (offset + 1, epoch)
                deliveries.append(Delivery(channel=ch, offset=offset, epoch=epoch))
                # Encoded once: these bytes are the hot-history entry and, inside the envelope, the record.
                message = ENCODER.encode(
                    ClientMessage(
                        channel=ch,
                        offset=offset,
                        epoch=epoch,
                        id=msg_id,
                        event=req.event,
                        data=req.data,
                        ts=ts,
                        socket_id=req.socket_id,
                        user_id=req.user_id,
                    )
                )
                payload = ENCODER.encode(
                    OutboxEnvelope(
                        tenant_id=tenant_id,
                        app_id=app_id,
                        message=msgspec.Raw(message),
                        traceparent=trace,
                        replay_of=req.replay_of,
                    )
                )
                shard = outbox_shard(ch)
                message_rows.append(
                    {
                        "message_id": msg_id,
                        "app_id": app_id,
                        "channel": ch,
                        "offset": offset,
                        "event": req.event,
                        "data": data,
                        "idempotency_key": req.idempotency_key,
                        "replay_of": req.replay_of,
                        "created_at": stored_now,
                    }
                )
                outbox_rows.append(
                    {
                        "tenant_id": tenant_id,
                        "app_id": app_id,
                        "shard": shard,
                        "channel": ch,
                        "offset": offset,
                        "payload": payload,
                        "created_at": stored_now,
                    }
                )
                staged.append(
                    Committed(0, shard, tenant_id, app_id, ch, offset, epoch, msg_id, payload, message, trace)
                )
            results[i] = PublishResult(id=msg_id, deliveries=deliveries)
            if req.idempotency_key is not None:
                key_results.append(
                    {
                        "app_id": app_id,
                        "key": req.idempotency_key,
                        "message_id": msg_id,
                        "result": msgspec.to_builtins(_IdemResult(id=msg_id, deliveries=deliveries)),
                        "created_at": now,
                    }
                )
        for i, first in repeats:
            earlier = results[first]
            assert earlier is not None
            results[i] = PublishResult(id=earlier.id, deliveries=earlier.deliveries, duplicate=True)
        committed: list[Committed] = []
        if message_rows:
            dialect = conn.dialect
            sql = raw.insert_sql(dialect, _MESSAGES.name, _MESSAGE_COLUMNS, len(message_rows))
            await raw.execute(conn, sql, raw.flat(_MESSAGE_COLUMNS, message_rows))
            # MariaDB ≥ 10.5 and SQLite ≥ 3.35 return the ids; on MySQL the relay polls the rows.
            returning = _OUTBOX_RETURNING if dialect.insert_returning else ()
            sql = raw.insert_sql(dialect, _OUTBOX.name, _OUTBOX_COLUMNS, len(outbox_rows), returning)
            placed_rows = await raw.execute(conn, sql, raw.flat(_OUTBOX_COLUMNS, outbox_rows), fetch=bool(returning))
            if returning:
                placed = {(ch, int(off)): row_id for row_id, ch, off in placed_rows}
                committed = [msgspec.structs.replace(c, id=int(placed[(c.channel, c.offset)])) for c in staged]
        if key_results:
            # Rows claimed above: one upsert stores every first 202 body.
            statement = upsert(
                conn.dialect, _KEYS, _KEY_COLUMNS, ("app_id", "key"), len(key_results), assign=("result",)
            )
            await conn.execute(statement, upsert_params(_KEY_COLUMNS, key_results))
        return [r for r in results if r is not None], committed

    async def _claim_keys(
        self,
        conn: AsyncConnection,
        app_id: str,
        first_of_key: dict[str, int],
        message_ids: list[str],
        now: dt.datetime,
    ) -> dict[str, PublishResult]:
        """Claim the idempotency keys; return the earlier result of each key whose claim is live."""
        claims = [
            {"app_id": app_id, "key": key, "message_id": message_ids[i], "result": {}, "created_at": now}
            for key, i in sorted(first_of_key.items())  # key order: concurrent claims lock alike
        ]
        if len(claims) == 1:
            if rowcount(await conn.execute(_CLAIM_KEY, claims[0])) == 1:
                return {}
        else:
            await conn.execute(_CLAIM_KEY, claims)  # a multi-row rowcount is not reliable on every driver
        earlier: dict[str, PublishResult] = {}
        found = await conn.execute(_READ_KEYS, {"app_id": app_id, "keys": [c["key"] for c in claims]})
        for key, message_id, result, created_at in found:
            mine = message_ids[first_of_key[key]]
            if message_id == mine:
                continue
            if now - created_at > IDEMPOTENCY_WINDOW:
                await conn.execute(_RENEW_KEY, {"w_app": app_id, "w_key": key, "w_message": mine, "w_at": now})
                continue
            first = msgspec.convert(result, _IdemResult)
            earlier[key] = PublishResult(id=first.id, deliveries=first.deliveries, duplicate=True)
        return earlier

    async def _bump(
        self, conn: AsyncConnection, app_id: str, counts: dict[str, int], stored_now: Any
    ) -> dict[str, tuple[int, str]]:
        """Add `counts[channel]` to each channel's top offset in one statement; return (top, epoch).

        Rows are written in name order, so concurrent multi-channel pushes lock in the same order.
        A channel seen for the first time is created with its derived initial epoch.
        """
        names = sorted(counts)
        dialect = conn.dialect
        args: list[Any] = []
        for ch in names:
            args += (app_id, ch, self.epochs.initial(app_id, ch), counts[ch], stored_now)
        result = await raw.execute(conn, _bump_sql(dialect, len(names)), args, fetch=dialect.insert_returning)
        if not dialect.insert_returning:
            sql = raw.select_in_sql(dialect, _CHANNELS.name, _TOP_COLUMNS, "app_id", "name", len(names))
            result = await raw.execute(conn, sql, [app_id, *names], fetch=True)
        return {name: (int(top), str(epoch)) for name, top, epoch in result}


def _is_deadlock(exc: BaseException) -> bool:
    # MySQL 1213 (deadlock) and 1205 (lock wait timeout); SQLite "database is locked".
    text = str(getattr(exc, "orig", exc))
    return "1213" in text or "1205" in text or "database is locked" in text


def _is_unavailable(exc: BaseException) -> bool:
    # MySQL client errors 2002/2003/2006/2013 and "server has gone away": the database is unreachable.
    text = str(getattr(exc, "orig", exc))
    return any(
        code in text for code in ("2002", "2003", "2006", "2013", "gone away", "Lost connection", "Can't connect")
    )
