"""One subscription's position; while `buffer` is a list the channel is replaying and live
messages wait there (`buffered` bytes of them, counted against the session's cap)."""

from __future__ import annotations


class ChannelSub:
    __slots__ = ("buffer", "buffered", "last")

    def __init__(self) -> None:
        self.last = 0
        self.buffer: list[tuple[int, str]] | None = []
        self.buffered = 0
