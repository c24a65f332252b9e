"""The HTTP API as the unmodified Pusher server SDKs use it: `pusher` on npm (pusher-http-node) and
`pusher` on PyPI (pusher-http-python), against a live server on both backend sets, with pusher-js
subscribers to see what was (and was not) delivered."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.live import LiveServer
from tests.pusher.conftest import Drivers, pusher_app
from tests.pusher.harness import NodeServerSdk, PusherApp, PusherJs

UNKNOWN_KEY = "sk_0000000000000000dead"
_unique = itertools.count()


def fresh() -> int:
    """Distinct data per request: the SDKs sign to the second with no nonce, and the server refuses a
    signature it has seen (replay protection), so identical triggers within a second would be 401."""
    return next(_unique)


async def eventually(check: Callable[[], Awaitable[Any]], want: Any, timeout: float = 8) -> Any:
    """Polls `check` until it returns `want` (channel counts are cluster-wide, published every ~0.2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got == want or time.monotonic() > deadline:
            assert got == want
            return got
        await asyncio.sleep(0.1)


async def delivered_then_nothing_else(client: PusherJs, sdk: NodeServerSdk, channel: str, event: str) -> list[Any]:
    """Everything `client` got as `event` on `channel`, once a last trigger (which follows the others on
    the channel) has arrived."""
    marker = f"end {fresh()}"
    await sdk.ok("trigger", channels=channel, event="marker", data=marker)
    await client.find(
        lambda x: x["type"] == "event" and x["channel"] == channel and x["data"] == marker, "marker event"
    )
    return client.data_of(channel, event)


async def test_wrong_secret_is_401_and_nothing_is_delivered(app: PusherApp, drivers: Drivers) -> None:
    client = await drivers.pusher_js(app)
    await client.subscribe("audit")
    node = await drivers.node_sdk(app)
    wrong = {"secret": "not-the-secret"}
    answer = await node.call("trigger", channels="audit", event="e", data={"from": "node-forged"}, signer=wrong)
    assert answer["status"] == 401, answer
    assert (
        await drivers.py_sdk(app, secret="not-the-secret").status("trigger", ["audit"], "e", {"from": "py-forged"})
        == 401
    )
    await node.ok("trigger", channels="audit", event="e", data={"from": "node"})
    assert await drivers.py_sdk(app).run("trigger", ["audit"], "e", {"from": "py"}) == {}
    assert await client.events("audit", "e", 2) == [{"from": "node"}, {"from": "py"}]
    assert await delivered_then_nothing_else(client, node, "audit", "e") == [{"from": "node"}, {"from": "py"}]
    # Reads are signed too.
    assert (await node.call("get", path="/channels", signer=wrong))["status"] == 401
    assert await drivers.py_sdk(app, secret="not-the-secret").status("channels_info") == 401


async def test_unknown_auth_key_is_401(app: PusherApp, drivers: Drivers) -> None:
    node = await drivers.node_sdk(app)
    stranger = {"key": UNKNOWN_KEY}
    assert (await node.call("trigger", channels="x", event="e", data="1", signer=stranger))["status"] == 401
    assert (await node.call("get", path="/channels", signer=stranger))["status"] == 401
    py = drivers.py_sdk(app, key=UNKNOWN_KEY)
    assert await py.status("trigger", ["x"], "e", "1") == 401
    assert await py.status("channels_info") == 401


async def test_the_600_second_window_both_ways(app: PusherApp, drivers: Drivers) -> None:
    client = await drivers.pusher_js(app)
    await client.subscribe("clock")
    node = await drivers.node_sdk(app)
    py = drivers.py_sdk(app)
    for skew in (-700, 700):
        answer = await node.call("trigger", channels="clock", event="e", data=f"node {skew}", skew=skew)
        assert answer["status"] == 401, (skew, answer)
        assert await py.status("trigger", ["clock"], "e", f"py {skew}", skew=skew) == 401, skew
        assert await py.status("channels_info", skew=skew) == 401, skew
    for skew in (-500, 500):
        await node.ok("trigger", channels="clock", event="e", data=f"node {skew}", skew=skew)
        assert await py.status("trigger", ["clock"], "e", f"py {skew}", skew=skew) == 200, skew
    inside = ["node -500", "py -500", "node 500", "py 500"]
    assert await client.events("clock", "e", 4) == inside
    assert await delivered_then_nothing_else(client, node, "clock", "e") == inside


async def test_event_data_over_10_kb_is_413(app: PusherApp, drivers: Drivers) -> None:
    client = await drivers.pusher_js(app)
    await client.subscribe("big")
    node = await drivers.node_sdk(app)
    answer = await node.call("trigger", channels="big", event="e", data="x" * 10_300)
    assert answer["status"] == 413, answer
    answer = await node.call("triggerBatch", batch=[{"channel": "big", "name": "e", "data": "y" * 10_300}])
    assert answer["status"] == 413, answer
    await node.ok("trigger", channels="big", event="e", data="z" * 10_000)
    assert await client.events("big", "e", 1) == ["z" * 10_000]
    assert await delivered_then_nothing_else(client, node, "big", "e") == ["z" * 10_000]


async def test_channel_lists_counts_and_users(app: PusherApp, drivers: Drivers) -> None:
    ann = await drivers.pusher_js(app, name="ann", presence={"user_id": "1", "user_info": {"n": "Ann"}})
    bob = await drivers.pusher_js(app, name="bob", presence={"user_id": "2", "user_info": {"n": "Bob"}})
    for channel in ("presence-room", "private-notes", "feed"):
        await ann.subscribe(channel)
    await bob.subscribe("presence-room")
    await bob.subscribe("feed")
    node = await drivers.node_sdk(app)
    py = drivers.py_sdk(app)

    async def node_get(path: str, **params: str) -> Any:
        return await node.ok("get", path=path, params=params or None)

    await eventually(
        lambda: node_get("/channels"), {"channels": {"presence-room": {}, "private-notes": {}, "feed": {}}}
    )
    presence_only = {"channels": {"presence-room": {"user_count": 2}}}
    await eventually(lambda: node_get("/channels", filter_by_prefix="presence-", info="user_count"), presence_only)
    assert await py.run("channels_info", prefix_filter="presence-", attributes=["user_count"]) == presence_only
    assert await node_get("/channels", filter_by_prefix="private-") == {"channels": {"private-notes": {}}}
    assert await py.run("channel_info", "presence-room", ["user_count", "subscription_count"]) == {
        "occupied": True,
        "user_count": 2,
        "subscription_count": 2,
    }
    assert await node_get("/channels/feed", info="subscription_count") == {"occupied": True, "subscription_count": 2}
    users = await node_get("/channels/presence-room/users")
    assert sorted(u["id"] for u in users["users"]) == ["1", "2"]
    assert sorted(u["id"] for u in (await py.run("users_info", "presence-room"))["users"]) == ["1", "2"]
    assert (await node.call("get", path="/channels/feed/users"))["status"] == 400  # not a presence channel

    await bob.disconnect()
    await eventually(lambda: node_get("/channels/presence-room/users"), {"users": [{"id": "1"}]})
    await eventually(
        lambda: node_get("/channels/feed", info="subscription_count"), {"occupied": True, "subscription_count": 1}
    )
    await ann.disconnect()
    await eventually(lambda: node_get("/channels"), {"channels": {}})
    assert await py.run("channel_info", "feed", ["subscription_count"]) == {"occupied": False, "subscription_count": 0}


async def test_python_sdk_multi_channel_trigger_with_socket_id_and_batch(app: PusherApp, drivers: Drivers) -> None:
    ann = await drivers.pusher_js(app, name="ann")
    bob = await drivers.pusher_js(app, name="bob")
    channels = ["py-a", "py-b", "presence-py-c"]
    for client in (ann, bob):
        for channel in channels[:2]:
            await client.subscribe(channel)
    carl = await drivers.pusher_js(app, name="carl", presence={"user_id": "3", "user_info": {}})
    await carl.subscribe("presence-py-c")
    py = drivers.py_sdk(app)
    assert await py.run("trigger", channels, "fan", {"v": "py"}, socket_id=ann.socket_id) == {}
    for channel in channels[:2]:
        assert await bob.events(channel, "fan", 1) == [{"v": "py"}]
    assert await carl.events("presence-py-c", "fan", 1) == [{"v": "py"}]
    batch = [
        {"channel": "py-a", "name": "step", "data": {"n": 1}},
        {"channel": "py-b", "name": "step", "data": {"n": 2}},
        {"channel": "py-a", "name": "step", "data": {"n": 3}, "socket_id": bob.socket_id},
    ]
    assert await py.run("trigger_batch", batch) == {}
    assert await ann.events("py-a", "step", 2) == [{"n": 1}, {"n": 3}]
    assert await bob.events("py-b", "step", 1) == [{"n": 2}]
    node = await drivers.node_sdk(app)
    for channel in channels[:2]:
        assert await delivered_then_nothing_else(ann, node, channel, "fan") == []
    assert await delivered_then_nothing_else(bob, node, "py-a", "step") == [{"n": 1}]


async def test_python_sdk_send_to_user_and_terminate_connections(app: PusherApp, drivers: Drivers) -> None:
    client = await drivers.pusher_js(app, user={"id": "u42"})
    await client.send({"op": "signin"})
    await client.frame("pusher:signin_success")
    await asyncio.sleep(0.2)  # pusher-js subscribes #server-to-user-u42 once signed in
    py = drivers.py_sdk(app)
    assert await py.run("send_to_user", "u42", "notice", {"k": 1}) == {}
    got = await client.find(lambda x: x["type"] == "user_event" and x["event"] == "notice", "server-to-user event")
    assert got["data"] == {"k": 1}
    # pusher-http-python posts to /users/{id}/terminate_connections without the /apps/{app_id} prefix.
    assert await py.run("terminate_user_connections", "u42") == {}
    error = await client.frame("pusher:error")
    assert error["data"]["code"] == 4009


async def test_replayed_signature_is_refused_but_repeated_reads_are_not(app: PusherApp, drivers: Drivers) -> None:
    client = await drivers.pusher_js(app)
    await client.subscribe("once")
    py = drivers.py_sdk(app)
    assert await py.send_twice("trigger", ["once"], "e", "only once") == (200, 401)
    assert await py.send_twice("channels_info") == (200, 200)
    node = await drivers.node_sdk(app)
    assert await delivered_then_nothing_else(client, node, "once", "e") == ["only once"]


async def test_key_scopes_apply(live: LiveServer, app: PusherApp, drivers: Drivers) -> None:
    reader = await live.runtime.tenancy.create_server_key(app.app_id, None, ["presence:read"])
    read_only = PusherApp(app.app_id, reader.key_id, reader.secret, app.host, app.port)
    node = await drivers.node_sdk(read_only)
    assert (await node.call("trigger", channels="x", event="e", data="1"))["status"] == 403
    await node.ok("get", path="/channels")
    py = drivers.py_sdk(read_only)
    assert await py.status("trigger", ["x"], "e", "2") == 403
    assert await py.status("channels_info") == 200


async def test_one_cluster_two_instances(pair: tuple[LiveServer, LiveServer]) -> None:
    """Full stack only: pusher-js clients on instance A and on instance B, the SDKs talking to B. Members,
    client events, triggers with socket_id exclusion, channel counts and terminate all span the cluster."""
    a, b = pair
    on_a, on_b = pusher_app(a), pusher_app(b)
    drivers = Drivers(a)
    try:
        ann = await drivers.pusher_js(on_a, name="ann@A", presence={"user_id": "1", "user_info": {}}, user={"id": "1"})
        bob = await drivers.pusher_js(on_b, name="bob@B", presence={"user_id": "2", "user_info": {}})
        await ann.subscribe("presence-span")
        assert (await bob.subscribe("presence-span"))["count"] == 2
        assert (await ann.event("presence-span", "pusher:member_added", timeout=15))["data"]["id"] == "2"
        assert await bob.trigger("presence-span", "client-ping", {"from": "bob"})
        assert (await ann.frame("client-ping", "presence-span", timeout=15))["user_id"] == "2"

        node_b = await drivers.node_sdk(on_b)
        await node_b.ok(
            "trigger", channels="presence-span", event="e", data={"n": 1}, params={"socket_id": ann.socket_id}
        )
        await node_b.ok("trigger", channels="presence-span", event="e", data={"n": 2})
        assert await bob.events("presence-span", "e", 2, timeout=15) == [{"n": 1}, {"n": 2}]
        assert await ann.events("presence-span", "e", 1, timeout=15) == [{"n": 2}]

        want = {"channels": {"presence-span": {"user_count": 2}}}
        params = {"filter_by_prefix": "presence-", "info": "user_count"}
        await eventually(lambda: node_b.ok("get", path="/channels", params=params), want)
        py_a = drivers.py_sdk(on_a)
        assert await py_a.run("channels_info", prefix_filter="presence-", attributes=["user_count"]) == want

        await ann.send({"op": "signin"})
        await ann.frame("pusher:signin_success")
        assert await drivers.py_sdk(on_b).run("terminate_user_connections", "1") == {}
        assert (await ann.frame("pusher:error", timeout=15))["data"]["code"] == 4009
        assert (await bob.event("presence-span", "pusher:member_removed", timeout=15))["data"]["id"] == "1"
    except BaseException:
        print("\n--- what the real libraries saw ---\n" + drivers.report())
        raise
    finally:
        await drivers.close()


async def test_members_of_a_departed_instance_are_announced_gone(pair: tuple[LiveServer, LiveServer]) -> None:
    """Full stack only: instance B leaves the registry with its connections still open, as a crash
    looks from A. A sweeps the channels its clients are members of: pusher-js on A is told Bob left,
    and the member list and counts no longer hold him."""
    a, b = pair
    drivers = Drivers(a)
    try:
        ann = await drivers.pusher_js(pusher_app(a), name="ann@A", presence={"user_id": "1", "user_info": {}})
        bob = await drivers.pusher_js(pusher_app(b), name="bob@B", presence={"user_id": "2", "user_info": {}})
        await ann.subscribe("presence-gone")
        assert (await bob.subscribe("presence-gone"))["count"] == 2
        assert (await ann.event("presence-gone", "pusher:member_added", timeout=15))["data"]["id"] == "2"
        await b.runtime.backends.registry.deregister()  # its lease ends: the instance key is deleted
        assert (await ann.event("presence-gone", "pusher:member_removed", timeout=15))["data"]["id"] == "2"
        assert (await ann.command("members", channel="presence-gone"))["members"]["count"] == 1
        assert await a.runtime.pusher.members(a.created.app_id, "presence-gone") == {"1": {}}
    except BaseException:
        print("\n--- what the real libraries saw ---\n" + drivers.report())
        raise
    finally:
        await drivers.close()
