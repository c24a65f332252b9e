"""The poll sessions with a request open on this instance, whose presence routes stay current.

A polling route counts only within POLL_GRACE of being refreshed (presence/store.py). While a
long-poll or SSE request is open, one batched UPDATE every POLL_REFRESH seconds refreshes the
routes of all of them, whatever their number; once more after a request ends, so the grace
counts from then. The task runs only while there is something to refresh.
"""

from __future__ import annotations

import asyncio
import logging

from pushwire.presence import store
from pushwire.presence.store import PresenceStore

log = logging.getLogger(__name__)

BATCH = 500


class OpenPolls:
    def __init__(self, presence: PresenceStore) -> None:
        self.presence = presence
        self._open: dict[str, int] = {}  # session id → requests open
        self._ended: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def opened(self, session_id: str) -> None:
        self._open[session_id] = self._open.get(session_id, 0) + 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="open-polls")

    def closed(self, session_id: str) -> None:
        left = self._open.get(session_id, 0) - 1
        if left > 0:
            self._open[session_id] = left
        else:
            self._open.pop(session_id, None)
            self._ended.add(session_id)

    def is_open(self, session_id: str) -> bool:
        return session_id in self._open

    async def _run(self) -> None:
        try:
            while self._open or self._ended:
                await asyncio.sleep(store.POLL_REFRESH)
                ids = list(self._open.keys() | self._ended)
                self._ended.clear()
                for start in range(0, len(ids), BATCH):
                    try:
                        await self.presence.touch(ids[start : start + BATCH])
                    except Exception as exc:  # noqa: BLE001 - a missed refresh only shortens a grace
                        log.warning("poll routes not refreshed: %s", exc)
        finally:
            self._task = None
