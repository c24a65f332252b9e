"""Group commit: concurrent single pushes of one app share a publish transaction.

A transaction costs several round trips whatever it holds, so under load the push API commits
what arrived while the previous transactions were in flight, up to MAX_BATCH per transaction and
MAX_INFLIGHT transactions at once (one on SQLite, which commits one writer at a time: a second
transaction in flight would only wait for the lock, and its pushes are better in the next batch). An idle server commits a push at once (no added latency).
Every caller still gets its 202 only after the commit that holds its message; a failed
transaction fails every push in it, and none of them was published (one transaction).
Each push keeps its own trace: the Publisher's observer reads every request's traceparent
(tracing/commit.py), so no caller's context has to run the transaction.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from pushwire.errors import BackendUnavailable
from pushwire.messaging.publish import Publisher, PublishRequest, PublishResult

MAX_BATCH = 100
# Under load the server is CPU-bound and a transaction costs the same few statements whatever it
# holds: 2 in flight gave 670 single pushes/s where 4 gave 500 (bench push_api, same machine).
MAX_INFLIGHT = 2

_Item = tuple[PublishRequest, "asyncio.Future[PublishResult]"]


class GroupCommit:
    def __init__(
        self,
        publisher: Publisher,
        max_batch: int = MAX_BATCH,
        max_inflight: int | None = None,
        on_transaction: Callable[[int], None] | None = None,
    ) -> None:
        self.publisher = publisher
        self.max_batch = max_batch
        if max_inflight is None:
            max_inflight = 1 if publisher.db.serial_writes else MAX_INFLIGHT
        self.max_inflight = max_inflight
        self.on_transaction = on_transaction
        self._pending: dict[tuple[str, str], list[_Item]] = {}
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.transactions = 0
        self.grouped = 0  # pushes that shared a transaction with another

    async def publish(self, tenant_id: str, app_id: str, request: PublishRequest) -> PublishResult:
        future: asyncio.Future[PublishResult] = asyncio.get_running_loop().create_future()
        self._pending.setdefault((tenant_id, app_id), []).append((request, future))
        self._kick()
        return await future

    def _kick(self) -> None:
        while self._pending and self._inflight < self.max_inflight:
            key = next(iter(self._pending))
            items = self._pending.pop(key)
            batch, rest = items[: self.max_batch], items[self.max_batch :]
            if rest:
                self._pending[key] = rest
            self._inflight += 1
            task = asyncio.create_task(self._flush(key, batch))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._done, batch))

    def _done(self, batch: list[_Item], task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._inflight -= 1
        # Cancelled (shutdown), even before it began: its callers must not wait forever for an answer.
        _settle(batch, lambda fut, _i: fut.set_exception(BackendUnavailable("database", "publish interrupted")))
        self._kick()

    async def _flush(self, key: tuple[str, str], batch: list[_Item]) -> None:
        live = [item for item in batch if not item[1].done()]  # callers that hung up are skipped
        if not live:
            return
        self.transactions += 1
        if len(live) > 1:
            self.grouped += len(live)
        if self.on_transaction is not None:
            self.on_transaction(len(live))
        try:
            results = await self.publisher.publish_many(key[0], key[1], [req for req, _ in live])
        except Exception as exc:  # noqa: BLE001 - handed to every caller of this transaction
            failure = exc  # bound here: `exc` is unset when the except block ends
            _settle(live, lambda fut, _i: fut.set_exception(failure))
        else:
            _settle(live, lambda fut, i: fut.set_result(results[i]))


def _settle(items: list[_Item], settle: Callable[[asyncio.Future[PublishResult], int], None]) -> None:
    for i, (_, future) in enumerate(items):
        if not future.done():
            settle(future, i)
