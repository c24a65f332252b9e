"""Push and batch on both backend sets: durable offsets, idempotency, history, and every bad input."""

from __future__ import annotations

import asyncio

import pytest

from pushwire.sdk import PushwireError
from tests.api.conftest import Stack


async def test_push_assigns_offsets_and_history_returns_them(stack: Stack) -> None:
    async with stack.client() as pw:
        first = await pw.push(channels=["room.lobby"], event="chat.message", data={"text": "hi"})
        second = await pw.push(channels=["room.lobby", "room.other"], event="chat.message", data=[1, 2])
        assert first["duplicate"] is False
        assert [(d["channel"], d["offset"]) for d in first["deliveries"]] == [("room.lobby", 1)]
        assert [(d["channel"], d["offset"]) for d in second["deliveries"]] == [("room.lobby", 2), ("room.other", 1)]
        page = await pw.history("room.lobby")
        assert page["top"] == 2 and page["epoch"] == first["deliveries"][0]["epoch"]
        assert [(m["offset"], m["id"], m["data"]) for m in page["messages"]] == [
            (1, first["id"], {"text": "hi"}),
            (2, second["id"], [1, 2]),
        ]
        assert page["messages"][0]["type"] == "message" and page["messages"][0]["ts"].endswith("Z")
        after = await pw.history("room.lobby", after=1, limit=1)
        assert [m["offset"] for m in after["messages"]] == [2]


async def test_users_and_broadcast_targets(stack: Stack) -> None:
    async with stack.client() as pw:
        r = await pw.push(users=["u1", "u2"], event="e", data=None)
        assert [d["channel"] for d in r["deliveries"]] == ["user.u1", "user.u2"]
        r = await pw.push(broadcast=True, event="e", data="x")
        assert [d["channel"] for d in r["deliveries"]] == ["broadcast"]


async def test_idempotency_key_returns_first_result(stack: Stack) -> None:
    async with stack.client() as pw:
        first = await pw.push(channels=["orders"], event="e", data=1, idempotency_key="order-42")
        again = await pw.push(channels=["orders"], event="e", data=1, idempotency_key="order-42")
        assert again["duplicate"] is True
        assert (again["id"], again["deliveries"]) == (first["id"], first["deliveries"])
        assert (await pw.history("orders"))["top"] == 1
        other = await pw.push(channels=["orders"], event="e", data=1, idempotency_key="ORDER-42")  # case matters
        assert other["duplicate"] is False


async def test_batch_results_per_item_in_order(stack: Stack) -> None:
    async with stack.client() as pw:
        out = await pw.push_batch(
            [
                {"channels": ["b"], "event": "e", "data": 1},
                {"channels": ["b"], "event": "bad event!", "data": 2},
                {"channels": ["b"], "event": "e", "data": 3, "idempotency_key": "k"},
                {"channels": ["b"], "event": "e", "data": 4, "idempotency_key": "k"},
                {"channels": ["b"], "event": "e", "data": "x" * 70_000},
            ]
        )
        statuses = [r["status"] for r in out["results"]]
        assert statuses == [202, 422, 202, 202, 413]
        assert out["results"][1]["error"] == "invalid_request"
        assert out["results"][3]["duplicate"] is True and out["results"][3]["id"] == out["results"][2]["id"]
        assert out["results"][4]["error"] == "payload_too_large"
        assert [m["data"] for m in (await pw.history("b"))["messages"]] == [1, 3]


async def test_batch_of_101_is_refused(stack: Stack) -> None:
    async with stack.client() as pw:
        with pytest.raises(PushwireError) as err:
            await pw.push_batch([{"channels": ["b"], "event": "e", "data": i} for i in range(101)])
        assert (err.value.status, err.value.code) == (422, "invalid_request")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"channels": ["a"], "users": ["u"], "event": "e", "data": 1}, 422, "invalid_request"),
        ({"channels": [f"c{i}" for i in range(101)], "event": "e", "data": 1}, 422, "invalid_request"),
        ({"channels": [], "event": "e", "data": 1}, 422, "invalid_request"),
        ({"channels": ["room:lobby"], "event": "e", "data": 1}, 422, "invalid_request"),
        ({"channels": ["x" * 165], "event": "e", "data": 1}, 422, "invalid_request"),
        ({"users": ["bad user"], "event": "e", "data": 1}, 422, "invalid_request"),
        ({"channels": ["a"], "event": "has space", "data": 1}, 422, "invalid_request"),
        ({"channels": ["a"], "event": "e" * 65, "data": 1}, 422, "invalid_request"),
        ({"channels": ["a"], "event": "e"}, 422, "invalid_request"),
        ({"channels": ["a"], "event": "e", "data": 1, "extra": 1}, 422, "invalid_request"),
        ({"channels": ["a"], "event": "e", "data": 1, "idempotency_key": "k" * 129}, 422, "invalid_request"),
        ({"channels": ["a"], "event": "e", "data": "x" * 70_000}, 413, "payload_too_large"),
        ({"event": "e", "data": 1}, 422, "invalid_request"),
    ],
)
async def test_bad_push_bodies(stack: Stack, body: dict, status: int, code: str) -> None:  # type: ignore[type-arg]
    async with stack.client() as pw:
        with pytest.raises(PushwireError) as err:
            await pw.request("POST", "/api/v1/push", json=body)
        assert (err.value.status, err.value.code) == (status, code)
        assert err.value.message
        if status == 422:
            assert err.value.body["details"]
        # the server keeps serving, and nothing was published
        assert (await pw.history("a"))["top"] == 0


async def test_malformed_json_is_422_with_details(stack: Stack) -> None:
    from pushwire.sdk.server import signed_headers

    body = b'{"channels": ["a"], "event": '
    headers = signed_headers(
        stack.created.server_key.key_id, stack.created.server_key.secret, "POST", "/api/v1/push", body=body
    )
    async with stack.raw() as http:
        r = await http.post("/api/v1/push", content=body, headers=headers)
    assert r.status_code == 422 and r.json()["error"] == "invalid_request" and r.json()["details"]


async def test_body_over_one_mib_is_refused(stack: Stack) -> None:
    from pushwire.sdk.server import signed_headers

    body = b'{"channels":["a"],"event":"e","data":"' + b"x" * (1024 * 1024 + 10) + b'"}'
    headers = signed_headers(
        stack.created.server_key.key_id, stack.created.server_key.secret, "POST", "/api/v1/push", body=body
    )
    async with stack.raw() as http:
        r = await http.post("/api/v1/push", content=body, headers=headers)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"


async def test_rate_limit_gives_429_with_retry_after(stack: Stack) -> None:
    created = await stack.new_app(push_rate=1, push_burst=3)
    async with stack.client(created.server_key.key_id, created.server_key.secret) as pw:
        for _ in range(3):
            await pw.push(channels=["r"], event="e", data=1)
        with pytest.raises(PushwireError) as err:
            await pw.push(channels=["r"], event="e", data=1)
        assert (err.value.status, err.value.code) == (429, "rate_limited")
        assert err.value.retry_after is not None and int(err.value.retry_after) >= 1
        assert (await pw.history("r"))["top"] == 3


async def test_history_and_push_of_app_a_never_touch_app_b(stack: Stack) -> None:
    other = await stack.new_app()
    async with stack.client() as a, stack.client(other.server_key.key_id, other.server_key.secret) as b:
        await a.push(channels=["shared"], event="e", data="from-a")
        page_b = await b.history("shared")
        assert page_b["top"] == 0 and page_b["messages"] == []
        await b.push(channels=["shared"], event="e", data="from-b")
        assert [m["data"] for m in (await a.history("shared"))["messages"]] == ["from-a"]


async def test_history_query_validation(stack: Stack) -> None:
    async with stack.client() as pw:
        for query in ([("limit", "0")], [("limit", "1001")], [("after", "-1")]):
            with pytest.raises(PushwireError) as err:
                await pw.request("GET", "/api/v1/channels/a/history", query)
            assert err.value.status in (400, 422)
            assert err.value.code == "invalid_request"


async def test_concurrent_pushes_get_distinct_gapless_offsets(stack: Stack) -> None:
    n = 60 if stack.runtime.backends.database.dialect == "sqlite" else 200
    created = await stack.new_app(push_rate=100_000, push_burst=100_000)
    async with stack.client(created.server_key.key_id, created.server_key.secret) as pw:
        results = await asyncio.gather(*(pw.push(channels=["hot"], event="e", data=i) for i in range(n)))
        offsets = sorted(r["deliveries"][0]["offset"] for r in results)
        assert offsets == list(range(1, n + 1))
        page = await pw.history("hot", limit=1000)
        assert [m["offset"] for m in page["messages"]] == list(range(1, n + 1))
        assert sorted(m["data"] for m in page["messages"]) == list(range(n))
        assert len({m["id"] for m in page["messages"]}) == n
