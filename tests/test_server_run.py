"""`pushwire run` as a real process: whom it believes about the caller's address, and what it logs.

uvicorn must not rewrite the client address from X-Forwarded-For (only PUSHWIRE_TRUSTED_PROXIES
decides that), its access log is off unless PUSHWIRE_ACCESS_LOG is set, and no log line carries
a client token from a query string.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import pytest
import websockets

from pushwire.cli.tenancy import mint_token
from pushwire.sdk.server import push_body, signed_headers
from pushwire.storage.database import Database
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.service import TenancyService
from pushwire.tenants.views import KeySecret
from tests.live import backend_env, free_port
from tests.services import unique

SECRET_TOKEN = "SECRETtoken-" + "x" * 24


@dataclass
class Served:
    http: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def pushwire_run(env: dict[str, str], log: Path, *extra: str) -> Iterator[Served]:
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PUSHWIRE_", "FORWARDED_ALLOW_IPS"))}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pushwire", "run", "--port", str(port), *extra],
            env={**base, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"http://127.0.0.1:{port}", port, log, proc)
    try:
        deadline = time.monotonic() + 40
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"pushwire run exited with {proc.returncode}:\n{served.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(served.http + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(served.output())
            time.sleep(0.2)
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(params=["single", "mariadb+redis"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    return await backend_env(request, tmp_path)


async def keys(env: dict[str, str], *allow: list[str]) -> tuple[str, list[KeySecret]]:
    """A new tenant's app with one server key per allow-list: (a valid client token, keys)."""
    db = Database(env["PUSHWIRE_DATABASE_URL"])
    await db.start()
    try:
        svc = TenancyService(db, SecretBox(env["PUSHWIRE_SECRET_KEY"]))
        tenant = await svc.create_tenant(unique("run-"))
        created = await svc.create_app(tenant.tenant_id, "web")
        made = [await svc.create_server_key(created.app_id, None, ["push"], cidrs) for cidrs in allow]
        ck = created.client_key
        assert ck.secret
        return mint_token(created.app_id, "u1", ck.kid, ck.secret, 600, []), made
    finally:
        await db.close()


async def signed_push(base: str, key: KeySecret, headers: dict[str, str] | None = None) -> httpx.Response:
    body = msgspec.json.encode(push_body(event="note", data={"n": 1}, channels=["news"]))
    assert key.secret
    signed = signed_headers(key.key_id, key.secret, "POST", "/api/v1/push", (), body)
    async with httpx.AsyncClient(base_url=base) as http:
        return await http.post(
            "/api/v1/push", content=body, headers={**signed, "Content-Type": "application/json", **(headers or {})}
        )


async def test_forwarded_for_from_loopback_does_not_pass_an_ip_allow_list(env: dict[str, str], tmp_path: Path) -> None:
    _, (ten, loopback) = await keys(env, ["10.0.0.0/8"], ["127.0.0.0/8"])
    # uvicorn's default would believe X-Forwarded-For from 127.0.0.1; FORWARDED_ALLOW_IPS widens it.
    env = {**env, "FORWARDED_ALLOW_IPS": "*"}
    with pushwire_run(env, tmp_path / "run.log") as served:
        spoofed = await signed_push(served.http, ten, {"X-Forwarded-For": "10.0.0.5"})
        assert spoofed.status_code == 403, spoofed.text
        assert spoofed.json()["error"] == "ip_not_allowed"
        plain = await signed_push(served.http, ten)
        assert plain.status_code == 403 and plain.json()["error"] == "ip_not_allowed"
        # The server works, and the allow-list is checked against the real peer.
        assert (await signed_push(served.http, loopback)).status_code == 202
        assert (await signed_push(served.http, loopback, {"X-Forwarded-For": "10.0.0.5"})).status_code == 202


async def test_trusted_proxies_setting_still_decides(env: dict[str, str], tmp_path: Path) -> None:
    """With loopback named in PUSHWIRE_TRUSTED_PROXIES, its X-Forwarded-For is believed (by Pushwire)."""
    _, (ten,) = await keys(env, ["10.0.0.0/8"])
    with pushwire_run({**env, "PUSHWIRE_TRUSTED_PROXIES": "127.0.0.1/32"}, tmp_path / "run.log") as served:
        assert (await signed_push(served.http, ten, {"X-Forwarded-For": "10.0.0.5"})).status_code == 202
        assert (await signed_push(served.http, ten, {"X-Forwarded-For": "192.0.2.5"})).status_code == 403


async def client_requests(served: Served, token: str) -> None:
    """What clients with a token in the URL do: WebSocket (valid token, then a bad one), long-poll
    and SSE (bad token: refused)."""
    base = f"ws://127.0.0.1:{served.port}/api/v1/ws?token="
    async with websockets.connect(base + token, open_timeout=5) as ws:
        async with asyncio.timeout(10):
            assert json.loads(await ws.recv())["type"] == "welcome"
    with contextlib.suppress(websockets.WebSocketException, OSError, TimeoutError):
        async with asyncio.timeout(10), websockets.connect(f"{base}{SECRET_TOKEN}&v=1", open_timeout=5) as ws:
            with contextlib.suppress(websockets.WebSocketException):
                await ws.recv()
    async with httpx.AsyncClient(base_url=served.http, timeout=10) as http:
        assert (await http.get(f"/api/v1/longpoll?token={SECRET_TOKEN}")).status_code == 401
        assert (await http.get(f"/api/v1/sse?v=1&access_token={SECRET_TOKEN}&token={SECRET_TOKEN}")).status_code == 401
        assert (await http.get("/health?probe=1")).status_code == 200


async def stopped(served: Served) -> str:
    served.proc.send_signal(signal.SIGTERM)
    await asyncio.to_thread(served.proc.wait, 15)
    return served.output()


async def test_access_log_on_logs_requests_but_never_tokens(env: dict[str, str], tmp_path: Path) -> None:
    token, _ = await keys(env)
    with pushwire_run({**env, "PUSHWIRE_ACCESS_LOG": "true"}, tmp_path / "run.log") as served:
        await client_requests(served, token)
        out = await stopped(served)
    assert "/api/v1/longpoll?token=" in out and '"GET /health?probe=1 HTTP/1.1" 200' in out, out
    assert "/api/v1/sse?v=1&access_token=" in out and "WebSocket /api/v1/ws?token=" in out, out
    assert "[accepted]" in out, out  # the valid token's connection is logged, its token is not
    assert SECRET_TOKEN not in out and "SECRETtoken" not in out and token not in out, out
    assert token.split(".")[-1] not in out, out


async def test_access_log_is_off_by_default(env: dict[str, str], tmp_path: Path) -> None:
    token, _ = await keys(env)
    with pushwire_run(env, tmp_path / "run.log", "--log-level", "info") as served:
        await client_requests(served, token)
        out = await stopped(served)
    assert "Uvicorn running" in out  # the server log itself is there
    assert "/health" not in out and "/api/v1/" not in out and "WebSocket" not in out, out
    assert "connection rejected" not in out and "connection open" not in out, out
    assert "SECRETtoken" not in out and token.split(".")[-1] not in out, out
