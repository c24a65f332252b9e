"""The `pushwire` CLI as scripts use it: real processes, --json output, exit codes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from tests.services import unique

PUSHWIRE = [sys.executable, "-m", "pushwire"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
    e["PUSHWIRE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    return e


def cli(env: dict[str, str], *args: str, stdin: str = "", ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*PUSHWIRE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def js(env: dict[str, str], *args: str, stdin: str = "") -> dict:  # type: ignore[type-arg]
    return json.loads(cli(env, *args, "--json", stdin=stdin).stdout)


def test_full_tenant_flow(env: dict[str, str]) -> None:
    cli(env, "database", "upgrade")
    tenant_id = js(env, "tenant", "create", "--name", "acme")["tenant_id"]
    created = js(env, "app", "create", "--tenant", tenant_id, "--name", "web", "--origin", "https://example.com")
    assert set(created) == {"app_id", "server_key", "client_key"}
    assert set(created["server_key"]) == {"key_id", "secret"} and set(created["client_key"]) == {"kid", "secret"}
    app_id = created["app_id"]

    key = js(env, "key", "create", "--app", app_id, "--scope", "push", "--allow-ip", "10.0.0.0/8")
    listed = {k["key_id"]: k for k in json.loads(cli(env, "key", "list", "--app", app_id, "--json").stdout)}
    assert listed[key["key_id"]]["scopes"] == ["push"]
    assert listed[key["key_id"]]["allow_ips"] == ["10.0.0.0/8"]
    assert "secret" not in listed[key["key_id"]]  # shown once, at creation
    assert listed[created["server_key"]["key_id"]]["scopes"] == ["push", "presence:read", "history:read"]

    revoked = js(env, "key", "revoke", key["key_id"])
    assert revoked["revoked_at"]

    ck = js(env, "client-key", "create", "--app", app_id, "--hs256")
    assert ck["kid"].startswith("ck_") and ck["secret"]

    token = cli(env, "token", "--app", app_id, "--user", "u1", "--ttl", "60", "--channel", "room.*").stdout.strip()
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, ck["secret"], algorithms=["HS256"])
    assert header["kid"] == ck["kid"]
    assert (claims["sub"], claims["app"], claims["channels"], claims["exp"] - claims["iat"]) == (
        "u1",
        app_id,
        ["room.*"],
        60,
    )

    user = js(
        env,
        "console-user",
        "create",
        "--email",
        "Ops@Example.com",
        "--role",
        "operator",
        "--password-stdin",
        stdin="correct horse battery\n",
    )
    assert user["email"] == "ops@example.com"

    # Every change made from the command line is in the audit log, by a `cli:` actor.
    db = env["PUSHWIRE_DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT actor, action, target FROM audit_log ORDER BY id").fetchall()
    assert [(a, t) for _, a, t in rows] == [
        ("tenant.create", tenant_id),
        ("app.create", app_id),
        ("server_key.create", key["key_id"]),
        ("server_key.revoke", key["key_id"]),
        ("client_key.create", ck["kid"]),
    ]
    assert all(actor.startswith("cli:") for actor, _, _ in rows)


def test_console_user_needs_stdin_password_and_tenant(env: dict[str, str]) -> None:
    cli(env, "database", "upgrade")
    p = cli(
        env,
        "console-user",
        "create",
        "--email",
        "a@b.c",
        "--role",
        "tenant_admin",
        "--password-stdin",
        stdin="longenough1\n",
        ok=False,
    )
    assert p.returncode == 1 and "--tenant" in p.stderr
    p = cli(env, "console-user", "create", "--email", "a@b.c", "--role", "operator", stdin="x", ok=False)
    assert p.returncode == 2 and "--password-stdin" in p.stderr


def test_demo_prints_credentials_once(env: dict[str, str]) -> None:
    cli(env, "database", "upgrade")
    first = js(env, "demo")
    assert first["created"] and first["server_key"]["secret"] and first["console"]["password"]
    second = js(env, "demo")
    assert not second["created"] and "server_key" not in second and second["app_id"] == first["app_id"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("key", "create", "--app", "1", "--scope", "admin"), "unknown scope"),
        (("app", "create", "--tenant", "tn_missing", "--name", "x"), "not found"),
        (("key", "revoke", "sk_missing"), "not found"),
    ],
)
def test_refusals_exit_1_with_one_line(env: dict[str, str], args: tuple[str, ...], fragment: str) -> None:
    cli(env, "database", "upgrade")
    p = cli(env, *args, ok=False)
    assert p.returncode == 1
    assert fragment in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize(
    ("var", "value", "fragment"),
    [
        ("PUSHWIRE_CACHE_URL", "memcached://x", "PUSHWIRE_CACHE_URL: unknown scheme"),
        ("PUSHWIRE_BUS_URL", "kafka://:9092", "PUSHWIRE_BUS_URL"),
        ("PUSHWIRE_CACHE_URL", "redis://127.0.0.1:1/0", "PUSHWIRE_CACHE_URL: cache unreachable"),
        ("PUSHWIRE_REGISTRY_URL", "etcd://127.0.0.1:1", "PUSHWIRE_REGISTRY_URL: registry unreachable"),
        ("PUSHWIRE_BUS_URL", "kafka://127.0.0.1:1", "PUSHWIRE_BUS_URL: bus unreachable"),
    ],
)
def test_bad_settings_exit_2_with_one_clear_line(env: dict[str, str], var: str, value: str, fragment: str) -> None:
    cli(env, "database", "upgrade")
    p = cli({**env, var: value}, "run", "--port", "1", ok=False)
    assert p.returncode == 2, p.stderr
    assert fragment in p.stderr
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_unreachable_database_exits_2(env: dict[str, str]) -> None:
    bad = {**env, "PUSHWIRE_DATABASE_URL": "mysql+asyncmy://root:@127.0.0.1:1/x", "PUSHWIRE_SECRET_KEY": "s" * 32}
    p = cli(bad, "tenant", "create", "--name", unique("x"), ok=False)
    assert p.returncode == 2 and p.stderr.startswith("pushwire: PUSHWIRE_DATABASE_URL") and "Traceback" not in p.stderr
