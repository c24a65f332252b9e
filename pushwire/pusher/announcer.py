"""Presence member events (`pusher_internal:member_added`/`member_removed`) as durable publishes
that outlive a database outage: a publish refused as unavailable is queued and retried in order,
so other members' lists do not drift from the membership kept in the cache.

No socket waits on an announcement and there is nobody to answer with an error, hence the retry.
The queue is bounded (the oldest event is dropped past it, and counted) and a channel's events keep
their order: while any event waits, later ones queue behind it instead of overtaking it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from pushwire.errors import BackendUnavailable
from pushwire.messaging.publish import PublishRequest, PublishResult
from pushwire.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Publish = Callable[[str, str, PublishRequest], Awaitable[PublishResult]]

MAX_PENDING = 10_000  # ~1 KB each: a bound of ~10 MB for an outage with that many joins and leaves
RETRY_FIRST = 0.2  # seconds; doubled per failed attempt up to RETRY_MAX
RETRY_MAX = 5.0


Item = tuple[str, str, PublishRequest]  # tenant id, app id, the event


class Announcer:
    def __init__(self, publish: Publish, max_pending: int = MAX_PENDING) -> None:
        self.publish = publish
        self.max_pending = max_pending
        self.pending: deque[Item] = deque()
        self.retried = 0  # published after waiting in the queue
        self.dropped = 0  # pushed out of a full queue, left in it at stop, or announced after stop
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        # One publish at a time per channel: a later event never overtakes one still in flight.
        self._channels: dict[tuple[str, str], tuple[asyncio.Lock, list[int]]] = {}

    async def announce(self, tenant_id: str, app_id: str, request: PublishRequest) -> None:
        if self._stopped:
            self.dropped += 1
            return
        async with self._serial(app_id, request):
            if self.pending:  # older events wait: this one goes behind them, never ahead
                self._queue((tenant_id, app_id, request))
                return
            try:
                await self.publish(tenant_id, app_id, request)
            except BackendUnavailable as exc:
                log.warning("%s on %s not published (%s); retrying", request.event, request.channels[0], exc)
                self._queue((tenant_id, app_id, request))

    @contextlib.asynccontextmanager
    async def _serial(self, app_id: str, request: PublishRequest) -> AsyncIterator[None]:
        key = (app_id, request.channels[0])
        lock, users = self._channels.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._channels[key]

    def _queue(self, item: Item) -> None:
        if len(self.pending) >= self.max_pending:
            _, _, lost = self.pending.popleft()
            self.dropped += 1
            log.error("member event queue full: dropped %s on %s", lost.event, lost.channels[0])
        self.pending.append(item)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._retry(), name="pusher-member-events")

    async def _retry(self) -> None:
        delay = RETRY_FIRST
        while self.pending:
            await asyncio.sleep(delay)
            while self.pending:
                item = self.pending.popleft()  # out of the queue while in flight: never evicted then
                tenant_id, app_id, request = item
                async with self._serial(app_id, request):
                    try:
                        await self.publish(tenant_id, app_id, request)
                    except BackendUnavailable:
                        self.pending.appendleft(item)
                        delay = min(delay * 2, RETRY_MAX)
                        break
                    except Exception:
                        # Not an outage (a bad row would fail forever): dropped rather than block the rest.
                        log.exception("member event %s on %s dropped", request.event, request.channels[0])
                        self.dropped += 1
                    else:
                        self.retried += 1
                        delay = RETRY_FIRST

    async def stop(self) -> None:
        self._stopped = True
        await cancel_and_wait(self._task)
        self._task = None
        if self.pending:
            log.warning("%d member events not published at shutdown", len(self.pending))
            self.dropped += len(self.pending)
            self.pending.clear()
