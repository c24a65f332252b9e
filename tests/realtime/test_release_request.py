"""The handshake request websockets' parser keeps is released only at a frame boundary
(transports/direct.py `release_request`); frames parse the same before and after."""

from __future__ import annotations

import os
import struct

from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

from pushwire.realtime.transports.direct import release_request

HANDSHAKE = (
    b"GET /api/v1/ws?token=secret HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _accepted() -> ServerProtocol:
    conn = ServerProtocol()
    conn.receive_data(HANDSHAKE)
    [request] = conn.events_received()
    conn.send_response(conn.accept(request))
    conn.data_to_send()
    return conn


def _masked(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + body


def _texts(conn: ServerProtocol) -> list[str]:
    return [bytes(e.data).decode() for e in conn.events_received() if isinstance(e, Frame) and e.opcode is Opcode.TEXT]


def test_the_request_is_released_between_frames() -> None:
    conn = _accepted()
    old = conn.parser
    assert release_request(conn)
    assert conn.parser is not old
    assert old.gi_frame is None  # closed: its locals (the request) are gone
    two = _masked("two")
    conn.receive_data(_masked("one") + two[:3])
    assert _texts(conn) == ["one"]
    conn.receive_data(two[3:])
    assert _texts(conn) == ["two"]


def test_a_frame_split_across_reads_parses_after_release() -> None:
    conn = _accepted()
    assert release_request(conn)
    frame = _masked("hello")
    for i in range(len(frame)):
        conn.receive_data(frame[i : i + 1])
    assert _texts(conn) == ["hello"]


def test_half_a_frame_read_keeps_the_parser() -> None:
    conn = _accepted()
    frame = _masked("later")
    conn.receive_data(frame[:4])  # header read, payload still to come
    old = conn.parser
    assert not release_request(conn)
    assert conn.parser is old
    conn.receive_data(frame[4:])
    assert _texts(conn) == ["later"]


def test_after_eof_nothing_changes() -> None:
    conn = _accepted()
    conn.receive_eof()
    old = conn.parser
    assert not release_request(conn)
    assert conn.parser is old
