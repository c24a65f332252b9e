"""`pushwire config set` validates before storing: a bad value is one line, exit 2, nothing written.

Against etcd (what instances of a cluster share) and the local registry (single node)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli.test_commands import cli
from tests.services import ETCD_URL, unique


@pytest.fixture(params=["local", "etcd"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
    e["PUSHWIRE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    e["PUSHWIRE_REGISTRY_URL"] = "local://" if request.param == "local" else f"{ETCD_URL}/{unique('cfg')}"
    return e


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("heartbeat", "0", "heartbeat must be between 1 and 600, not 0"),
        ("heartbeat", "601", "between 1 and 600"),
        ("heartbeat", "-5", "between 1 and 600"),
        ("heartbeat", '"abc"', "heartbeat must be a whole number of seconds"),
        ("heartbeat", "2.5", "whole number"),
        ("heartbeat", "true", "whole number"),
        ("heartbeat", "null", "whole number"),
        ("heartbeat", "abc", "VALUE must be JSON"),
        ("push_enabled", '"false"', "push_enabled must be true or false"),
        ("push_enabled", "0", "push_enabled must be true or false"),
        ("hearbeat", "30", "unknown config key 'hearbeat'; known keys: heartbeat, push_enabled"),
    ],
)
def test_bad_values_are_refused_before_storing(env: dict[str, str], key: str, value: str, fragment: str) -> None:
    p = cli(env, "config", "set", key, value, ok=False)
    assert p.returncode == 2, p.stderr
    assert fragment in p.stderr and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    if "etcd" in env["PUSHWIRE_REGISTRY_URL"]:
        assert key not in json.loads(cli(env, "config", "show", "--json").stdout)


def test_good_values_are_stored(env: dict[str, str]) -> None:
    cli(env, "config", "set", "heartbeat", "30")
    cli(env, "config", "set", "push_enabled", "false")
    if "etcd" in env["PUSHWIRE_REGISTRY_URL"]:
        assert json.loads(cli(env, "config", "show", "--json").stdout) == {"heartbeat": 30, "push_enabled": False}
