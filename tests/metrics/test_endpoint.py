"""GET /metrics end to end: disabled without a token, 401 without the right one, and counts that move."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pushwire.app import create_app
from pushwire.metrics.sampler import read_samples
from pushwire.runtime import Runtime
from pushwire.sdk import AsyncServerClient
from pushwire.sdk.server import PushwireError
from pushwire.settings import load_settings
from tests.live import Client, LiveServer, backend_env, live_server
from tests.metrics.exposition import parse, value

TOKEN = "scrape-token-0123456789abcdef"
SECRET = "test-secret-key-0123456789"


@pytest.fixture(params=["single", "mariadb+redis"])
async def live(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LiveServer]:
    env = await backend_env(request, tmp_path, PUSHWIRE_METRICS_TOKEN=TOKEN)
    async with live_server(env) as server:
        yield server


async def test_metrics_are_disabled_without_a_token(tmp_path: Path) -> None:
    app = create_app(
        load_settings(
            {"PUSHWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/off.db", "PUSHWIRE_SECRET_KEY": SECRET}
        )
    )
    runtime: Runtime = app.state.runtime
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pushwire.test") as http:
            for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": f"Bearer {TOKEN}"}):
                r = await http.get("/metrics", headers=headers)
                assert r.status_code == 404, r.text
                assert r.json()["error"] == "not_found" and "PUSHWIRE_METRICS_TOKEN" in r.json()["message"]
        assert runtime.metrics.errors.get("not_found") == 3
    finally:
        await runtime.backends.database.close()


async def test_scrape_needs_the_token_and_counts_pushes_deliveries_errors_and_connections(live: LiveServer) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=live.http) as http:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": TOKEN},
            {"Authorization": f"Bearer {TOKEN}x"},
        ):
            r = await http.get("/metrics", headers=headers)
            assert r.status_code == 401, headers
            assert r.headers["content-type"].startswith("application/json")
            assert r.json()["error"] == "unauthorized" and r.json()["message"]
        async with await Client.connect(live.ws_url(live.token("u1"))) as c, live.pusher() as pw:
            await c.recv_until("welcome")
            await pw.push(users=["u1"], event="e", data={"n": 1})
            [m] = await c.messages(1)
            assert m["data"] == {"n": 1}
            key_id = live.created.server_key.key_id
            async with AsyncServerClient(live.http, key_id, "not-the-secret") as forged:
                with pytest.raises(PushwireError) as bad:
                    await forged.push(users=["u1"], event="e", data=2)
            async with AsyncServerClient(live.http, "sk_nosuchkey0000000000", "x") as stranger:
                with pytest.raises(PushwireError) as unknown:
                    await stranger.push(users=["u1"], event="e", data=3)
            assert (bad.value.code, unknown.value.code) == ("bad_signature", "unknown_key")
            r = await http.get("/metrics", headers=auth)
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
            series, types = parse(r.text)
            app = live.app_id
            assert value(series, "pushwire_messages_in_total", app=app) == 1
            assert (value(series, "pushwire_messages_out_total", app=app) or 0) >= 1
            assert value(series, "pushwire_errors_total", code="bad_signature") == 1
            assert value(series, "pushwire_errors_total", code="unknown_key") == 1
            assert value(series, "pushwire_errors_total", code="unauthorized") == 5
            assert value(series, "pushwire_connections", app=app) == 1
            assert value(series, "pushwire_instance_connections") == 1
            assert value(series, "pushwire_outbox_backlog") is not None
            topic = f"pushwire.{live.tenant_id}"
            lags = {k: v for k, v in series.items() if k[0] == "pushwire_consumer_lag" and dict(k[1])["topic"] == topic}
            assert lags and all(v >= 0 for v in lags.values())
            assert types["pushwire_delivery_latency_seconds"] == "histogram"
            assert {"pushwire_connections", "pushwire_outbox_backlog", "pushwire_consumer_lag"} <= set(types)
            # The lifespan started the sampler: this instance's samples are in the shared cache.
            iid = live.runtime.settings.instance_id
            for _ in range(50):
                samples = (await read_samples(live.runtime.backends.cache, [iid]))[iid]
                if samples and samples[-1].connections.get(app) == 1:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("no sample with the connection")
