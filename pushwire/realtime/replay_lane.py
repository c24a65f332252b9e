"""A session's replays, run one at a time in their own task (see catch_up.py).

Keyed by channel: a replay queued for a channel replaces one of that channel still waiting, so
what waits is bounded by the session's subscriptions, whatever the client sends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class ReplayLane:
    def __init__(self, name: str, on_failure: Callable[[], None]) -> None:
        self.name = name
        self.on_failure = on_failure
        self._waiting: dict[str, Callable[[], Awaitable[None]]] = {}
        self._task: asyncio.Task[None] | None = None

    def queue(self, channel: str, run: Callable[[], Awaitable[None]]) -> None:
        self._waiting.pop(channel, None)
        self._waiting[channel] = run
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)

    async def _loop(self) -> None:
        while self._waiting:
            channel = next(iter(self._waiting))
            run = self._waiting.pop(channel)
            try:
                await run()
            except Exception:
                log.exception("%s: replay of %s failed", self.name, channel)
                self.on_failure()

    def cancel(self) -> None:
        self._waiting.clear()
        task, self._task = self._task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
