"""Channel positions for many connects at once: reads asked while one is in flight share the next.

Every connect reads the epoch and top offset of its personal channel and of `broadcast`; in a
connect storm that is one query per connection, all for the same `broadcast` row. Here the
requests waiting when a read starts become one query per app (a channel asked twice is read
once), at most MAX_INFLIGHT reads at a time. An idle server reads at once.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

from pushwire.messaging.history import ChannelState, History

MAX_INFLIGHT = 2
# Channels per query: bounds the IN list.
MAX_CHANNELS = 500


class StateReads:
    def __init__(self, history: History, max_inflight: int = MAX_INFLIGHT) -> None:
        self.history = history
        self.max_inflight = max_inflight
        # Per app, per channel, the callers' futures: each caller has its own, so one that hangs up
        # cancels only its own wait, not the read the others share.
        self._pending: dict[str, dict[str, list[asyncio.Future[ChannelState]]]] = {}
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.queries = 0

    async def states(self, app_id: str, channels: Sequence[str]) -> dict[str, ChannelState]:
        loop = asyncio.get_running_loop()
        waiting = self._pending.setdefault(app_id, {})
        futures = {}
        for ch in channels:
            fut = futures[ch] = loop.create_future()
            waiting.setdefault(ch, []).append(fut)
        self._kick()
        try:
            return {ch: await fut for ch, fut in futures.items()}
        finally:
            for fut in futures.values():  # after a failure or a hang-up: none left unretrieved
                if not fut.done():
                    fut.cancel()
                elif not fut.cancelled():
                    fut.exception()

    def _kick(self) -> None:
        while self._pending and self._inflight < self.max_inflight:
            app_id = next(iter(self._pending))
            waiting = self._pending.pop(app_id)
            if len(waiting) > MAX_CHANNELS:
                rest = dict(list(waiting.items())[MAX_CHANNELS:])
                waiting = dict(list(waiting.items())[:MAX_CHANNELS])
                self._pending[app_id] = rest
            self._inflight += 1
            task = asyncio.create_task(self._read(app_id, waiting))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._done, waiting))

    def _done(self, waiting: dict[str, list[asyncio.Future[ChannelState]]], task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._inflight -= 1
        if task.cancelled():
            exc: BaseException = asyncio.CancelledError()
        else:
            exc = task.exception() or RuntimeError("channel positions not read")
        for futures in waiting.values():  # only those the read did not answer (cancelled or failed)
            for fut in futures:
                if not fut.done():
                    fut.set_exception(exc)
        self._kick()

    async def _read(self, app_id: str, waiting: dict[str, list[asyncio.Future[ChannelState]]]) -> None:
        self.queries += 1
        states = await self.history.states(app_id, list(waiting))
        for ch, futures in waiting.items():
            for fut in futures:
                if not fut.done():
                    fut.set_result(states[ch])
