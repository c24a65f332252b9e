"""Frames written straight to the socket (realtime/transports/direct.py): byte-exact frames for
every length class, read back by the websockets library's own parser, and the live server really
taking that path (with the test client's ASGI path as the fallback)."""

from __future__ import annotations

import asyncio

import pytest
from websockets.frames import OP_TEXT, Frame
from websockets.streams import StreamReader

from pushwire.realtime.session import Session
from pushwire.realtime.tokens import ClientIdentity
from pushwire.realtime.transports.direct import text_frame
from pushwire.realtime.transports.websocket import WebSocketTransport
from tests.live import Client, LiveServer


def _parse_all(data: bytes) -> list[Frame]:
    """Frames in `data`, by the websockets library's parser, as a client reads a server's frames."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
        try:
            next(parser)
        except StopIteration as done:
            frames.append(done.value)
        else:
            raise AssertionError("a frame was cut short")
    return frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 200_000])
def test_text_frames_of_every_length_class_parse(size: int) -> None:
    text = ("é" * size)[: size // 2] + "x" * (size - size // 2)  # multi-byte and ASCII
    frames = _parse_all(text_frame(text) + text_frame("next"))
    assert [(f.opcode, f.fin) for f in frames] == [(OP_TEXT, True), (OP_TEXT, True)]
    assert frames[0].data.decode() == text and frames[1].data == b"next"


async def test_live_connections_are_written_directly(live: LiveServer) -> None:
    app = await live.new_app(max_payload_bytes=300_000)
    async with await Client.connect(live.ws_url(live.token("direct", ["room.*"], created=app))) as c:
        await c.recv_until("welcome")
        [session] = live.runtime.hub.user_sessions(app.app_id, "direct")
        assert isinstance(session.transport, WebSocketTransport) and session.transport.direct
        await c.send({"type": "subscribe", "channel": "room.d"})
        await c.recv_until("subscribed")
        async with live.pusher(app) as pw:
            for text in ("small", "m" * 1_000, "é" * 70_000):  # 7-bit, 16-bit and 64-bit lengths
                await pw.push(channels=["room.d"], event="e", data={"text": text})
        got = await c.messages(3)
        assert [m["data"]["text"] for m in got] == ["small", "m" * 1_000, "é" * 70_000]
        assert [m["offset"] for m in got] == [1, 2, 3]


class _Direct:
    """A transport that writes at once while `open`, else makes the session queue."""

    kind = "ws"

    def __init__(self) -> None:
        self.open = True
        self.now: list[str] = []  # written by try_send
        self.batches: list[list[str]] = []  # written by the session's writer task

    def try_send(self, frame: str) -> bool:
        if self.open:
            self.now.append(frame)
        return self.open

    async def send_frames(self, frames: list[str]) -> None:
        self.batches.append(list(frames))

    async def close(self, code: int, reason: str) -> None:
        return None


def _session(transport: _Direct) -> Session:
    identity = ClientIdentity(
        app_id="1",
        tenant_id="t",
        user_id="u",
        channels=("room.*",),
        info=None,
        expires_at=0.0,
        max_connections=10,
        max_connections_per_user=10,
        allowed_origins=(),
    )
    return Session("s1", identity, transport)


async def test_frames_go_out_at_once_only_behind_nothing_queued() -> None:
    transport = _Direct()
    session = _session(transport)
    transport.open = False
    session.enqueue("welcome")  # the socket is paused: queued
    transport.open = True
    session.enqueue("a")  # the queue is not empty: behind "welcome", not past it
    assert transport.now == [] and session.pending_frames() == 2
    session.start()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert transport.batches == [["welcome", "a"]] and session.delivered == 2
    session.enqueue("b")  # nothing queued now: written at once, no writer wake-up
    assert transport.now == ["b"] and session.pending_frames() == 0 and session.delivered == 3
    span = _Span()
    session.watch(span)  # its frame is out already: the span ends now
    assert span.ended
    transport.open = False
    session.enqueue("c")
    assert session.pending_frames() == 1 and transport.now == ["b"]
    await session.stop()


class _Span:
    ended = False

    def end(self) -> None:
        self.ended = True


def test_a_message_is_framed_once_for_all_its_subscribers() -> None:
    message = "".join(["{", '"type":"message"', "}"])  # built at run time: not an interned constant
    first = text_frame(message)
    assert text_frame(message) is first  # the same string (one delivery): the same bytes object
    other = "".join(["{", '"type":"other"', "}"])
    assert _parse_all(text_frame(other))[0].data == other.encode()
    assert _parse_all(text_frame(message))[0].data == message.encode()
