"""A small Server-Sent Events reader for the tests: events as dicts, each read with a timeout."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx


class SseEvents:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines: AsyncIterator[str] = response.aiter_lines()
        self.comments = 0

    async def next(self, timeout: float = 10) -> dict[str, str] | None:
        """The next block (`event`, `data`, `id` as sent; a comment as `comment`), or None when
        the stream ended."""
        event: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line == "":
                    if event:
                        return event
                elif line.startswith(":"):
                    self.comments += 1
                    event["comment"] = line[1:].strip()
                else:
                    key, _, value = line.partition(": ")
                    event[key] = value
        return None

    async def until(self, kind: str, timeout: float = 10) -> dict[str, str]:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next(timeout)
                assert event is not None, f"the stream ended before an {kind!r} event"
                if event.get("event") == kind:
                    return event

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.response.aclose()
