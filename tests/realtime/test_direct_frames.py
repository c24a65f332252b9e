"""Frames written straight to the socket (realtime/transports/direct.py): byte-exact frames for
every length class, read back by the websockets library's own parser, and the live server really
taking that path (with the test client's ASGI path as the fallback)."""

from __future__ import annotations

import pytest
from websockets.frames import OP_TEXT, Frame
from websockets.streams import StreamReader

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
