"""A detached WebSocket connection's incoming messages (transports/direct.py), in order, without a task.

Frames that need no I/O (ping, pong, unsubscribe, a bad frame) are handled the moment they
arrive. One that awaits (subscribe, ack) runs in a short-lived task; frames arriving meanwhile
wait behind it, and the socket stops reading until they are done — the peer's sends back up in
TCP, as they did behind uvicorn's queue. The disconnect ends the session once, whichever side
closed first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Coroutine
from typing import Any, Protocol

from pushwire.realtime.protocol import Close
from pushwire.realtime.session import Session
from pushwire.realtime.transports.direct import DirectWriter

log = logging.getLogger(__name__)


class FrameHandler(Protocol):
    """What handles a connection's frames and its end (Connections; the Pusher protocol's PusherSockets)."""

    def receive(self, session: Session, text: str | None, data: bytes | None) -> Coroutine[Any, Any, None] | None: ...

    async def close(self, session: Session) -> None: ...


# Sessions being closed: their tasks are kept referenced until they finish.
_closing: set[asyncio.Task[None]] = set()


class SessionInbox:
    __slots__ = ("_connections", "_ended", "_session", "_task", "_waiting", "_writer")

    def __init__(self, connections: FrameHandler, session: Session, writer: DirectWriter) -> None:
        self._connections = connections
        self._session = session
        self._writer = writer
        self._waiting: deque[tuple[str | None, bytes | None]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._ended = False

    def message(self, text: str | None, data: bytes | None) -> None:
        if self._ended or self._session.closing is not None:
            return
        if self._task is not None:  # an earlier frame is still being handled: keep the order
            if self._waiting is None:
                self._waiting = deque()
            self._waiting.append((text, data))
            self._writer.pause_reading()
            return
        work = self._connections.receive(self._session, text, data)
        if work is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(work))

    async def _run(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
            while self._waiting and not self._ended and self._session.closing is None:
                text, data = self._waiting.popleft()
                more = self._connections.receive(self._session, text, data)
                if more is not None:
                    await more
        except Exception:
            log.exception("session %s: a frame could not be handled", self._session.id)
            self._session.close_soon(Close.RECONNECT, "internal error; reconnect and resume with since")
        finally:
            self._task = None
            self._waiting = None
            self._writer.resume_reading()

    def disconnected(self, code: int) -> None:
        if self._ended:
            return
        self._ended = True
        task = asyncio.get_running_loop().create_task(self._close())
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    async def _close(self) -> None:
        try:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
            await self._connections.close(self._session)
        finally:
            # The connection's objects form a cycle through this inbox (session → transport →
            # writer → protocol → relay → inbox → session): cut here, so they are freed now
            # rather than by a full GC collection. Nothing reads them after `_ended`.
            del self._session, self._writer, self._connections
