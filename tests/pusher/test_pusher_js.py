"""The unmodified pusher-js 8 (npm, Node build) against a live server, on both backend sets.

Events are triggered with the unmodified `pusher` npm SDK, and channel/user auth is signed by that SDK
inside the pusher-js driver, as a tenant's backend does (clients/pusher_js_client.mjs).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
from typing import Any

from tests.live import Client, LiveServer
from tests.pusher.conftest import Drivers
from tests.pusher.harness import PusherApp, PusherJs

_sentinels = itertools.count()
# Something in flight that was going to arrive has arrived by then (the server runs in this process).
SETTLE = 0.5


async def sentinel(sdk: Any, client: PusherJs, channel: str) -> None:
    """Triggers a last event on `channel` and waits for `client` to get it: whatever was sent before it
    on that channel has been delivered (or never will be)."""
    # Unique data: the pusher SDKs sign to the second with no nonce, and the server refuses a signature
    # it has already seen (replay protection), so two identical triggers within a second would be 401.
    await sdk.ok("trigger", channels=[channel], event="sentinel", data=f"end {next(_sentinels)}")
    await client.event(channel, "sentinel")
    await asyncio.sleep(0.1)


def error_code(error: Any) -> Any:
    """The Pusher code inside a pusher-js connection error ({type, error: {type, data: {code}}} or {type, data})."""
    while isinstance(error, dict):
        if isinstance(error.get("data"), dict) and "code" in error["data"]:
            return error["data"]["code"]
        error = error.get("error")
    return None


async def test_connects_with_a_pusher_socket_id(app: PusherApp, drivers: Drivers) -> None:
    client = await drivers.pusher_js(app)
    assert re.fullmatch(r"\d+\.\d+", client.socket_id)
    assert await client.state() == "connected"
    assert not client.seen(lambda x: x["type"] == "error")


async def test_public_events_arrive_intact_and_in_order(app: PusherApp, drivers: Drivers) -> None:
    client = await drivers.pusher_js(app)
    sdk = await drivers.node_sdk(app)
    assert await client.subscribe("orders") == {}
    payloads: list[Any] = [
        {"i": i, "text": 'a/b "quoted" \\ é ✓ \u2028', "nested": {"list": [1, 2.5, None, True]}} for i in range(20)
    ]
    for payload in payloads:
        await sdk.ok("trigger", channels="orders", event="order-placed", data=payload)
    await sdk.ok("trigger", channels="orders", event="plain", data="just a string, not JSON")
    assert await client.events("orders", "order-placed", 20) == payloads
    [plain] = await client.events("orders", "plain", 1)
    assert plain == "just a string, not JSON"
    frame = await client.frame("order-placed")
    assert frame["channel"] == "orders" and frame["user_id"] is None


async def test_unsubscribe_stops_delivery(app: PusherApp, drivers: Drivers) -> None:
    client = await drivers.pusher_js(app)
    witness = await drivers.pusher_js(app, name="witness")
    sdk = await drivers.node_sdk(app)
    for c in (client, witness):
        await c.subscribe("news")
    await sdk.ok("trigger", channels="news", event="headline", data={"n": 1})
    assert await client.events("news", "headline", 1) == [{"n": 1}]
    await client.unsubscribe("news")
    await asyncio.sleep(SETTLE)
    await sdk.ok("trigger", channels="news", event="headline", data={"n": 2})
    await sentinel(sdk, witness, "news")  # the witness, still subscribed, got n=2 and then this
    assert await witness.events("news", "headline", 2) == [{"n": 1}, {"n": 2}]
    assert [m["data"] for m in client.frames("headline")] == [{"n": 1}], "the server kept sending after unsubscribe"


async def test_private_channel_signed_by_the_sdk(app: PusherApp, drivers: Drivers) -> None:
    client = await drivers.pusher_js(app)
    sdk = await drivers.node_sdk(app)
    assert await client.subscribe("private-account-7") == {}
    assert client.seen(lambda x: x["type"] == "auth" and x["channel"] == "private-account-7")
    await sdk.ok("trigger", channels="private-account-7", event="balance", data={"eur": 12})
    assert await client.events("private-account-7", "balance", 1) == [{"eur": 12}]


async def test_forged_channel_auth_is_refused_visibly(app: PusherApp, drivers: Drivers) -> None:
    other = await drivers.new_app()
    member = {"user_id": "9", "user_info": {}}
    wrong_secret = await drivers.pusher_js(app, name="wrong-secret", authSecret="not-the-secret", presence=member)
    other_key = await drivers.pusher_js(
        app, name="other-app-key", authKey=other.key, authSecret=other.secret, presence=member
    )
    for client in (wrong_secret, other_key):
        for channel in ("private-x", "presence-x"):
            error = await client.subscribe_error(channel)
            assert error["status"] == 401 and error["type"] == "AuthError", error
        assert await client.state() == "connected"


async def test_presence_members_join_and_leave(app: PusherApp, drivers: Drivers) -> None:
    channel = "presence-lobby"
    ann = await drivers.pusher_js(app, name="ann", presence={"user_id": "1", "user_info": {"name": "Ann"}})
    joined = await ann.subscribe(channel)
    assert joined["count"] == 1 and joined["me"] == {"id": "1", "info": {"name": "Ann"}}
    assert joined["members"] == {"1": {"name": "Ann"}}

    bob = await drivers.pusher_js(app, name="bob", presence={"user_id": "2", "user_info": {"name": "Bob"}})
    seen_by_bob = await bob.subscribe(channel)
    assert seen_by_bob["count"] == 2 and seen_by_bob["me"]["id"] == "2"
    assert seen_by_bob["members"] == {"1": {"name": "Ann"}, "2": {"name": "Bob"}}
    added = await ann.event(channel, "pusher:member_added")
    assert added["data"] == {"id": "2", "info": {"name": "Bob"}}
    assert (await ann.command("members", channel=channel))["members"]["count"] == 2

    await bob.disconnect()
    removed = await ann.event(channel, "pusher:member_removed")
    assert removed["data"]["id"] == "2"
    assert (await ann.command("members", channel=channel))["members"]["count"] == 1


async def test_same_user_on_two_connections_is_one_member(app: PusherApp, drivers: Drivers) -> None:
    channel = "presence-desk"
    ann = await drivers.pusher_js(app, name="ann", presence={"user_id": "1", "user_info": {"name": "Ann"}})
    await ann.subscribe(channel)
    bob1 = await drivers.pusher_js(app, name="bob-1", presence={"user_id": "2", "user_info": {"name": "Bob"}})
    await bob1.subscribe(channel)
    await ann.event(channel, "pusher:member_added")
    bob2 = await drivers.pusher_js(app, name="bob-2", presence={"user_id": "2", "user_info": {"name": "Bob"}})
    assert (await bob2.subscribe(channel))["count"] == 2
    await bob1.disconnect()
    await asyncio.sleep(SETTLE)
    await sentinel(await drivers.node_sdk(app), ann, channel)
    assert len(ann.data_of(channel, "pusher:member_added")) == 1
    assert not ann.data_of(channel, "pusher:member_removed"), "Bob still has a connection"
    await bob2.disconnect()
    removed = await ann.event(channel, "pusher:member_removed")
    assert removed["data"]["id"] == "2"


async def test_client_events_reach_others_but_not_the_sender(app: PusherApp, drivers: Drivers) -> None:
    ann = await drivers.pusher_js(app, name="ann")
    bob = await drivers.pusher_js(app, name="bob")
    for client in (ann, bob):
        await client.subscribe("private-chat")
    assert await bob.trigger("private-chat", "client-typing", {"who": "bob", "text": "a/b ✓"})
    frame = await ann.frame("client-typing", "private-chat")
    assert frame["data"] == {"who": "bob", "text": "a/b ✓"}
    assert frame["user_id"] is None  # user_id only on presence channels
    await sentinel(await drivers.node_sdk(app), bob, "private-chat")
    assert not bob.frames("client-typing"), "a client event came back to its sender"


async def test_client_events_on_presence_carry_the_senders_user_id(app: PusherApp, drivers: Drivers) -> None:
    channel = "presence-room"
    ann = await drivers.pusher_js(app, name="ann", presence={"user_id": "1", "user_info": {}})
    bob = await drivers.pusher_js(app, name="bob", presence={"user_id": "2", "user_info": {}})
    await ann.subscribe(channel)
    await bob.subscribe(channel)
    assert await bob.trigger(channel, "client-wave", {"hi": True})
    frame = await ann.frame("client-wave", channel)
    assert frame["user_id"] == "2" and frame["data"] == {"hi": True}
    await sentinel(await drivers.node_sdk(app), bob, channel)
    assert not bob.frames("client-wave")


async def test_client_events_are_refused_on_public_channels(app: PusherApp, drivers: Drivers) -> None:
    ann = await drivers.pusher_js(app, name="ann")
    bob = await drivers.pusher_js(app, name="bob")
    sdk = await drivers.node_sdk(app)
    for client in (ann, bob):
        await client.subscribe("lobby")
    await bob.trigger("lobby", "client-shout", {"x": 1})  # pusher-js sends it; the server must refuse it
    error = await bob.frame("pusher:error")
    assert isinstance(error["data"], dict) and error["data"].get("code") is not None, error
    await sentinel(sdk, ann, "lobby")
    assert not ann.frames("client-shout"), "a client event on a public channel was delivered"
    assert await bob.state() == "connected"


async def test_client_events_over_the_rate_limit_get_4301(app: PusherApp, drivers: Drivers) -> None:
    ann = await drivers.pusher_js(app, name="ann")
    bob = await drivers.pusher_js(app, name="bob")
    sdk = await drivers.node_sdk(app)
    for client in (ann, bob):
        await client.subscribe("private-burst")
    for i in range(25):
        await bob.send({"op": "trigger", "channel": "private-burst", "event": "client-tick", "data": {"i": i}})
    error = await bob.frame("pusher:error")
    assert error["data"]["code"] == 4301 and error["channel"] == "private-burst", error
    await ann.gather(lambda x: x["type"] == "message" and x["event"] == "client-tick", 10, "client events")
    await sentinel(sdk, ann, "private-burst")
    delivered = [m["data"]["i"] for m in ann.frames("client-tick")]
    assert 10 <= len(delivered) < 25 and delivered == sorted(delivered), delivered
    assert await bob.state() == "connected"


async def test_trigger_to_several_channels_excludes_the_socket_id(app: PusherApp, drivers: Drivers) -> None:
    ann = await drivers.pusher_js(app, name="ann")
    bob = await drivers.pusher_js(app, name="bob")
    sdk = await drivers.node_sdk(app)
    channels = ["multi-a", "multi-b", "private-multi-c"]
    for client in (ann, bob):
        for channel in channels:
            await client.subscribe(channel)
    answer = await sdk.ok("trigger", channels=channels, event="fan", data={"v": 1}, params={"socket_id": ann.socket_id})
    assert answer == {}
    for channel in channels:
        assert await bob.events(channel, "fan", 1) == [{"v": 1}]
        await sentinel(sdk, ann, channel)
    assert not ann.frames("fan"), "the socket_id named in the trigger got the event"


async def test_batch_trigger_delivers_every_event_in_order(app: PusherApp, drivers: Drivers) -> None:
    ann = await drivers.pusher_js(app, name="ann")
    bob = await drivers.pusher_js(app, name="bob")
    sdk = await drivers.node_sdk(app)
    for client in (ann, bob):
        await client.subscribe("batch-a")
        await client.subscribe("batch-b")
    batch = [
        {"channel": "batch-a", "name": "step", "data": {"n": 1}},
        {"channel": "batch-b", "name": "step", "data": {"n": 2}},
        {"channel": "batch-a", "name": "step", "data": {"n": 3}, "socket_id": ann.socket_id},
        {"channel": "batch-a", "name": "step", "data": "four"},
    ]
    assert await sdk.ok("triggerBatch", batch=batch) == {}
    assert await bob.events("batch-a", "step", 3) == [{"n": 1}, {"n": 3}, "four"]
    assert await bob.events("batch-b", "step", 1) == [{"n": 2}]
    assert await ann.events("batch-a", "step", 2) == [{"n": 1}, "four"]
    await sentinel(sdk, ann, "batch-a")
    assert ann.data_of("batch-a", "step") == [{"n": 1}, "four"]


async def test_unknown_key_is_refused_with_4001(app: PusherApp, drivers: Drivers) -> None:
    bogus = PusherApp(app.app_id, "sk_doesnotexist0000000", app.secret, app.host, app.port)
    client = await drivers.pusher_js(bogus, connect=False)
    error = await client.error()
    assert error_code(error["error"]) == 4001, error
    await asyncio.sleep(SETTLE)
    assert not client.seen(lambda x: x["type"] == "state" and x["current"] == "connected")
    assert await client.state() in ("failed", "disconnected", "unavailable")


async def test_two_apps_sharing_channel_names_never_see_each_other(
    live: LiveServer, app: PusherApp, drivers: Drivers
) -> None:
    other = await drivers.new_app()
    mine = await drivers.pusher_js(app, name="app-1")
    theirs = await drivers.pusher_js(other, name="app-2")
    for client in (mine, theirs):
        await client.subscribe("shared")
        await client.subscribe("private-shared")
    sdk_mine = await drivers.node_sdk(app)
    sdk_theirs = await drivers.node_sdk(other)
    for channel in ("shared", "private-shared"):
        await sdk_mine.ok("trigger", channels=channel, event="who", data="app-1")
        await sdk_theirs.ok("trigger", channels=channel, event="who", data="app-2")
        assert await mine.events(channel, "who", 1) == ["app-1"]
        assert await theirs.events(channel, "who", 1) == ["app-2"]
    await sentinel(sdk_mine, mine, "shared")
    await sentinel(sdk_theirs, theirs, "shared")
    assert mine.data_of("shared", "who") == ["app-1"] and theirs.data_of("shared", "who") == ["app-2"]
    # App 2's credentials open and trigger nothing of app 1's.
    answer = await sdk_theirs.call("trigger", channels="shared", event="who", data="x", signer={"appId": app.app_id})
    assert answer["status"] == 401, answer  # app 2's key is not a key of app 1
    stray = await drivers.pusher_js(app, name="app-1 signed by app-2", authKey=other.key, authSecret=other.secret)
    assert (await stray.subscribe_error("private-shared"))["status"] == 401
    await sentinel(sdk_mine, mine, "shared")
    assert mine.data_of("shared", "who") == ["app-1"]


async def test_a_native_push_reaches_a_pusher_js_subscriber(live: LiveServer, app: PusherApp, drivers: Drivers) -> None:
    client = await drivers.pusher_js(app)
    await client.subscribe("room.interop")
    async with live.pusher() as native:
        await native.push(channels=["room.interop"], event="greet", data={"a": 1, "s": "x/y"})
        await native.push(channels=["room.interop"], event="greet", data="text")
        await native.push(channels=["room.interop"], event="greet", data=[1, 2])
    assert await client.events("room.interop", "greet", 3) == [{"a": 1, "s": "x/y"}, "text", [1, 2]]


async def test_a_pusher_trigger_reaches_a_native_subscriber(live: LiveServer, app: PusherApp, drivers: Drivers) -> None:
    sdk = await drivers.node_sdk(app)
    async with await Client.connect(live.ws_url(live.token("u1", ["room.*"]))) as native:
        await native.recv_until("welcome")
        await native.send({"type": "subscribe", "channel": "room.bridge"})
        await native.recv_until("subscribed")
        await sdk.ok("trigger", channels="room.bridge", event="note", data={"b": 2})
        await sdk.ok("trigger", channels="room.bridge", event="note", data="plain")
        first, second = await native.messages(2)
    assert first["channel"] == "room.bridge" and first["event"] == "note"
    # A Pusher trigger's data is a string; natives get that string as the message's data.
    assert first["data"] == '{"b":2}' and second["data"] == "plain"
    assert second["offset"] == first["offset"] + 1


async def test_encrypted_channel_round_trips_through_pusher_js_decryption(app: PusherApp, drivers: Drivers) -> None:
    master = base64.b64encode(bytes(range(32))).decode()
    client = await drivers.pusher_js(app, encryptionMasterKeyBase64=master)
    sdk = await drivers.node_sdk(app, encryptionMasterKeyBase64=master)
    channel = "private-encrypted-vault"
    await client.subscribe(channel)
    secret = {"pin": "1234", "note": "é ✓ a/b"}
    await sdk.ok("trigger", channels=channel, event="sealed", data=secret)
    assert await client.events(channel, "sealed", 1) == [secret]
    frame = await client.frame("sealed")
    assert set(frame["data"]) == {"nonce", "ciphertext"}, "the server must relay the ciphertext untouched"
    assert "1234" not in str(frame["data"])
    assert not client.seen(lambda x: x["type"] == "log" and "decrypt" in x["message"].lower())


async def test_cache_channel_gives_the_last_event_to_a_new_subscriber(app: PusherApp, drivers: Drivers) -> None:
    first = await drivers.pusher_js(app, name="first")
    sdk = await drivers.node_sdk(app)
    await first.subscribe("cache-price")
    await first.event("cache-price", "pusher:cache_miss")
    await sdk.ok("trigger", channels="cache-price", event="tick", data={"p": 1})
    await sdk.ok("trigger", channels="cache-price", event="tick", data={"p": 2})
    assert await first.events("cache-price", "tick", 2) == [{"p": 1}, {"p": 2}]
    second = await drivers.pusher_js(app, name="second")
    await second.subscribe("cache-price")
    assert await second.events("cache-price", "tick", 1) == [{"p": 2}]
    await asyncio.sleep(SETTLE)
    assert not second.data_of("cache-price", "pusher:cache_miss")
    assert second.data_of("cache-price", "tick") == [{"p": 2}]


async def test_signin_server_to_user_and_terminate(app: PusherApp, drivers: Drivers) -> None:
    client = await drivers.pusher_js(app, user={"id": "u7", "user_info": {"name": "Uma"}})
    other = await drivers.pusher_js(app, name="other", user={"id": "u8"})
    sdk = await drivers.node_sdk(app)
    await client.send({"op": "signin"})
    await other.send({"op": "signin"})
    for c in (client, other):
        await c.frame("pusher:signin_success")
    await asyncio.sleep(0.2)  # pusher-js subscribes #server-to-user-{id} after the sign-in
    await sdk.ok("sendToUser", user_id="u7", event="notice", data={"n": 1})
    got = await client.find(lambda x: x["type"] == "user_event" and x["event"] == "notice", "server-to-user event")
    assert got["data"] == {"n": 1}
    assert await sdk.ok("terminateUserConnections", user_id="u7") == {}
    error = await client.frame("pusher:error")
    assert error["data"]["code"] == 4009
    await client.find(lambda x: x["type"] == "state" and x["current"] != "connected", "disconnection")
    await asyncio.sleep(SETTLE)
    assert await other.state() == "connected"
    assert not other.seen(lambda x: x["type"] == "user_event")
