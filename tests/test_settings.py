"""Settings: defaults, validation with one line naming the setting, the persisted dev secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from pushwire.errors import SettingsError
from pushwire.settings import load_settings


def test_defaults_are_single_node(tmp_path: Path) -> None:
    s = load_settings({"PUSHWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/p.db"})
    assert (s.cache_url, s.bus_url, s.registry_url) == ("memory://", "memory://", "local://")
    assert s.instance_id.startswith("pw-")
    assert len(s.secret_key) >= 32


def test_dev_secret_is_generated_once_and_persisted(tmp_path: Path) -> None:
    env = {"PUSHWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/p.db"}
    first = load_settings(env).secret_key
    assert load_settings(env).secret_key == first
    assert (tmp_path / "p.secret").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("env", "setting", "fragment"),
    [
        ({"PUSHWIRE_CACHE_URL": "memcached://x"}, "PUSHWIRE_CACHE_URL", "unknown scheme"),
        ({"PUSHWIRE_BUS_URL": "kafka://"}, "PUSHWIRE_BUS_URL", "no host"),
        ({"PUSHWIRE_BUS_URL": "kafka://a:1,b"}, "PUSHWIRE_BUS_URL", "host:port"),
        ({"PUSHWIRE_REGISTRY_URL": "etcd://host:notaport"}, "PUSHWIRE_REGISTRY_URL", "malformed"),
        ({"PUSHWIRE_DATABASE_URL": "postgresql://x/y"}, "PUSHWIRE_DATABASE_URL", "unknown scheme"),
        ({"PUSHWIRE_DATABASE_URL": "mysql+asyncmy://root@h:3306"}, "PUSHWIRE_DATABASE_URL", "no database"),
        ({"PUSHWIRE_TRUSTED_PROXIES": "10.0.0.0/8,nonsense"}, "PUSHWIRE_TRUSTED_PROXIES", "nonsense"),
        ({"PUSHWIRE_INSTANCE_ID": "has space"}, "PUSHWIRE_INSTANCE_ID", "A-Za-z0-9"),
        ({"PUSHWIRE_OTLP_ENDPOINT": "grpc://x"}, "PUSHWIRE_OTLP_ENDPOINT", "http"),
        ({"PUSHWIRE_KAFKA_PARTITIONS": "many"}, "PUSHWIRE_KAFKA_PARTITIONS", "integer"),
        ({"PUSHWIRE_KAFKA_IDEMPOTENT": "perhaps"}, "PUSHWIRE_KAFKA_IDEMPOTENT", "boolean"),
        ({"PUSHWIRE_KAFKA_FETCH_WAIT_MS": "0"}, "PUSHWIRE_KAFKA_FETCH_WAIT_MS", "1"),
        ({"PUSHWIRE_KAFKA_FETCH_WAIT_MS": "501"}, "PUSHWIRE_KAFKA_FETCH_WAIT_MS", "500"),
        ({"PUSHWIRE_SECRET_KEY": "short"}, "PUSHWIRE_SECRET_KEY", "16"),
    ],
)
def test_bad_values_name_the_setting(tmp_path: Path, env: dict[str, str], setting: str, fragment: str) -> None:
    env = {"PUSHWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/p.db", **env}
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert err.value.setting == setting
    assert fragment in err.value.detail


def test_shared_database_requires_a_secret_key() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"PUSHWIRE_DATABASE_URL": "mysql+asyncmy://root:@127.0.0.1:3306/pushwire"})
    assert err.value.setting == "PUSHWIRE_SECRET_KEY"


def test_trusted_proxies_parse_to_networks(tmp_path: Path) -> None:
    s = load_settings(
        {"PUSHWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/p.db", "PUSHWIRE_TRUSTED_PROXIES": "10.0.0.0/8, ::1"}
    )
    assert [str(n) for n in s.trusted_networks] == ["10.0.0.0/8", "::1/128"]
