"""Platform messages as Pusher frames, and Pusher channel names on the platform (no I/O)."""

from __future__ import annotations

import json

import msgspec

from pushwire.messaging.envelope import ENCODER, ClientMessage
from pushwire.pusher import frames as f
from pushwire.pusher import names


def _message(channel: str, event: str, data: bytes, **extra: str) -> str:
    m = ClientMessage(
        channel=channel,
        offset=3,
        epoch="e",
        id="m1",
        event=event,
        data=msgspec.Raw(data),
        ts="2026-12-07T00:00:00Z",
        **extra,
    )
    return ENCODER.encode(m).decode()


def test_a_native_push_reaches_pusher_clients_with_string_data() -> None:
    out = f.channel_frame(_message("room.x", "hello", b'{"a":1}'))
    assert json.loads(out.text) == {"event": "hello", "channel": "room.x", "data": '{"a":1}'}
    assert out.socket_id is None


def test_a_trigger_keeps_its_string_and_names_the_excluded_socket() -> None:
    out = f.channel_frame(_message("room.x", "hello", b'"{\\"a\\":1}"', socket_id="1.2"))
    assert json.loads(out.text)["data"] == '{"a":1}' and out.socket_id == "1.2"


def test_client_events_keep_the_senders_data_and_user() -> None:
    out = f.channel_frame(_message("presence-r", "client-typing", b'{"who":"b"}', socket_id="1.2", user_id="7"))
    assert json.loads(out.text) == {
        "event": "client-typing",
        "channel": "presence-r",
        "data": {"who": "b"},
        "user_id": "7",
    }


def test_personal_channels_are_server_to_user_channels() -> None:
    out = f.channel_frame(_message("user.42", "note", b"1"))
    assert json.loads(out.text)["channel"] == "#server-to-user-42"
    assert names.platform_channel("#server-to-user-42") == "user.42"
    assert names.pusher_channel("user.42") == "#server-to-user-42"


def test_native_only_and_invalid_channel_names_are_refused() -> None:
    for bad in ("broadcast", "user.42", "#server-to-user-", "a:b", "x" * 165, "", "#other"):
        assert names.platform_channel(bad) is None, bad
    assert names.platform_channel("presence-cache-x") == "presence-cache-x"


def test_channel_kinds() -> None:
    assert names.is_private("private-encrypted-x") and names.is_encrypted("private-encrypted-x")
    assert not names.allows_client_events("private-encrypted-x") and names.allows_client_events("presence-x")
    assert not names.allows_client_events("room") and names.is_cache("private-cache-x")
    assert names.is_event("App\\Events\\OrderShipped") and not names.is_event("pusher:x")
    assert not names.is_event("a b") and not names.is_event("x" * 65)


def test_server_frames_encode_internal_data_as_strings_and_errors_as_objects() -> None:
    established = json.loads(f.frame("pusher:connection_established", {"socket_id": "1.2", "activity_timeout": 25}))
    assert json.loads(established["data"]) == {"socket_id": "1.2", "activity_timeout": 25}
    error = json.loads(f.error(4001, "nope"))
    assert error == {"event": "pusher:error", "data": {"code": 4001, "message": "nope"}}
