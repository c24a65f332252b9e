"""`pushwire app limits` and the switches that end connections, as scripts use them, on SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from pushwire.console.audit import AuditLog
from pushwire.storage.database import Database
from tests.cli.test_commands import cli, js

ALL_FLAGS = {
    "--push-rate": ("push_rate", 700),
    "--push-burst": ("push_burst", 900),
    "--max-connections": ("max_connections", 20_000),
    "--max-connections-per-user": ("max_connections_per_user", 20),
    "--max-payload-bytes": ("max_payload_bytes", 100_000),
    "--hot-history": ("hot_history_size", 2_000),
    "--retention-days": ("retention_days", 90),
    "--max-token-lifetime": ("max_token_lifetime", 3_600),
}


@pytest.fixture(params=["sqlite", "mariadb"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
    e["PUSHWIRE_SECRET_KEY"] = "cli-secret-key-0123456789"
    if request.param == "sqlite":
        e["PUSHWIRE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
        cli(e, "database", "upgrade")
    else:
        e["PUSHWIRE_DATABASE_URL"] = request.getfixturevalue("mysql_url")
    return e


def _app(env: dict[str, str]) -> tuple[str, str]:
    tenant_id = js(env, "tenant", "create", "--name", f"t-{os.urandom(4).hex()}")["tenant_id"]
    return tenant_id, js(env, "app", "create", "--tenant", tenant_id, "--name", "web")["app_id"]


def _audit(env: dict[str, str], app_id: str) -> list[Any]:
    async def read() -> list[Any]:
        db = Database(env["PUSHWIRE_DATABASE_URL"])
        await db.start()
        try:
            return await AuditLog(db).entries(None, app_id=app_id)
        finally:
            await db.close()

    return asyncio.run(read())


def test_prints_and_changes_every_limit_and_audits(env: dict[str, str]) -> None:
    _, app_id = _app(env)
    shown = js(env, "app", "limits", "--app", app_id)
    assert shown["app_id"] == app_id and shown["limits"]["push_rate"] == 1_000
    assert shown["maxima"]["push_rate"] == 10_000
    args = [str(a) for flag, (_, value) in ALL_FLAGS.items() for a in (flag, value)]
    changed = js(env, "app", "limits", "--app", app_id, *args)
    assert changed["limits"] == dict(ALL_FLAGS.values())
    plain = cli(env, "app", "limits", "--app", app_id).stdout
    assert "push_rate: 700" in plain and "retention_days: 90" in plain
    [entry] = [e for e in _audit(env, app_id) if e.action == "app.update"]
    assert entry.actor.startswith("cli:") and entry.details["push_rate"] == {"from": 1_000, "to": 700}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--push-rate", "2000000000"), "--push-rate: push rate (messages/s) must be between 1 and 10000"),
        (("--retention-days", "1000000"), "--retention-days: history retention (days) must be between 1 and 3650"),
        (("--hot-history", "10001"), "PUSHWIRE_MAX_HOT_HISTORY_SIZE"),
        (("--max-connections", "0"), "between 1 and 100000"),
        (("--push-burst", "-1"), "between 1 and 20000"),
        (("--push-rate", "1.5"), "must be a whole number"),
        (("--push-rate", "lots"), "must be a whole number"),
    ],
)
def test_values_out_of_range_exit_2_with_one_line(env: dict[str, str], args: tuple[str, ...], fragment: str) -> None:
    _, app_id = _app(env)
    p = cli(env, "app", "limits", "--app", app_id, *args, ok=False)
    assert p.returncode == 2, p.stderr
    assert fragment in p.stderr and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert js(env, "app", "limits", "--app", app_id)["limits"]["push_rate"] == 1_000  # nothing stored


def test_maxima_follow_the_settings(env: dict[str, str]) -> None:
    _, app_id = _app(env)
    p = cli({**env, "PUSHWIRE_MAX_PUSH_RATE": "500"}, "app", "limits", "--app", app_id, "--push-rate", "600", ok=False)
    assert p.returncode == 2 and "between 1 and 500" in p.stderr
    raised = js({**env, "PUSHWIRE_MAX_PUSH_RATE": "50000"}, "app", "limits", "--app", app_id, "--push-rate", "40000")
    assert raised["limits"]["push_rate"] == 40_000


def test_unknown_app_exits_1(env: dict[str, str]) -> None:
    p = cli(env, "app", "limits", "--app", "999999999", "--push-rate", "5", ok=False)
    assert p.returncode == 1 and "not found" in p.stderr


def test_switches_and_client_key_revoke(env: dict[str, str]) -> None:
    tenant_id, app_id = _app(env)
    assert js(env, "app", "disable", app_id)["enabled"] is False
    assert js(env, "app", "enable", app_id)["enabled"] is True
    assert js(env, "tenant", "disable", tenant_id)["disabled"] is True
    assert js(env, "tenant", "enable", tenant_id)["disabled"] is False
    kid = json.loads(cli(env, "client-key", "list", "--app", app_id, "--json").stdout)[0]["kid"]
    assert js(env, "client-key", "revoke", "--app", app_id, kid)["revoked"] is True
    listed = json.loads(cli(env, "client-key", "list", "--app", app_id, "--json").stdout)
    assert listed[0]["revoked_at"]
    actions = {e.action for e in _audit(env, app_id)}
    assert {"app.update", "client_key.revoke"} <= actions
    missing = cli(env, "client-key", "revoke", "--app", app_id, "ck_missing", ok=False)
    assert missing.returncode == 1 and "not found" in missing.stderr
