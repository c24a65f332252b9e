"""Static checks of the container deployment: docker-compose.yml and deploy/nginx.conf.

Docker is not needed; the files are parsed and their wiring checked.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
NGINX = ROOT / "deploy" / "nginx.conf"

BACKING = ("mysql", "redis", "kafka", "etcd")
INSTANCES = ("pushwire-1", "pushwire-2")
URL_SETTINGS = ("PUSHWIRE_DATABASE_URL", "PUSHWIRE_CACHE_URL", "PUSHWIRE_BUS_URL", "PUSHWIRE_REGISTRY_URL")


@pytest.fixture(scope="module")
def services() -> dict:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(compose, dict) and isinstance(compose.get("services"), dict)
    return compose["services"]


@pytest.fixture(scope="module")
def nginx_conf() -> str:
    return NGINX.read_text()


def environment(service: dict) -> dict[str, str]:
    """Compose accepts a mapping or a list of KEY=VALUE strings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def depends_on(service: dict) -> dict[str, str]:
    """Service name -> condition (short list form means service_started)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def test_all_services_exist(services: dict) -> None:
    expected = {*BACKING, "migrate", *INSTANCES, "nginx"}
    assert expected <= set(services), f"missing: {sorted(expected - set(services))}"


def test_backing_service_images(services: dict) -> None:
    assert services["mysql"]["image"] == "mysql:8.4"
    assert services["redis"]["image"] == "redis:7-alpine"
    assert services["kafka"]["image"] == "apache/kafka:3.9.0"
    assert services["etcd"]["image"] == "quay.io/coreos/etcd:v3.5.17"
    assert services["nginx"]["image"] == "nginx:1.27-alpine"
    for name in BACKING:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_mysql_database_and_user(services: dict) -> None:
    env = environment(services["mysql"])
    assert env["MYSQL_DATABASE"] == "pushwire"
    assert env["MYSQL_USER"] == env["MYSQL_PASSWORD"] == "pushwire"
    assert "mysqladmin" in " ".join(services["mysql"]["healthcheck"]["test"])
    assert "ping" in services["mysql"]["healthcheck"]["test"]


def test_kafka_kraft_single_node(services: dict) -> None:
    env = environment(services["kafka"])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_NODE_ID"] == "1"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert env["KAFKA_LISTENERS"] == "PLAINTEXT://:9092,CONTROLLER://:9093"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "1"
    assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
    # KRaft refuses to format storage unless the cluster id is a base64url-encoded 16-byte UUID.
    if "CLUSTER_ID" in env:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])


def test_etcd_client_urls(services: dict) -> None:
    command = services["etcd"]["command"]
    command = " ".join(command) if isinstance(command, list) else command
    assert "--listen-client-urls=http://0.0.0.0:2379" in command
    assert "--advertise-client-urls=http://etcd:2379" in command


def test_migrate_runs_once_after_mysql(services: dict) -> None:
    migrate = services["migrate"]
    command = migrate["command"]
    assert (" ".join(command) if isinstance(command, list) else command) == "database upgrade"
    assert depends_on(migrate) == {"mysql": "service_healthy"}
    assert str(migrate.get("restart")) == "no"
    env = environment(migrate)
    assert env["PUSHWIRE_DATABASE_URL"] == environment(services["pushwire-1"])["PUSHWIRE_DATABASE_URL"]
    assert env["PUSHWIRE_SECRET_KEY"] == environment(services["pushwire-1"])["PUSHWIRE_SECRET_KEY"]


@pytest.mark.parametrize("name", INSTANCES)
def test_instance_has_all_backend_urls(services: dict, name: str) -> None:
    env = environment(services[name])
    for setting in URL_SETTINGS:
        assert env.get(setting), f"{name} lacks {setting}"
    assert env["PUSHWIRE_DATABASE_URL"] == "mysql+asyncmy://pushwire:pushwire@mysql:3306/pushwire"
    assert env["PUSHWIRE_CACHE_URL"] == "redis://redis:6379/0"
    assert env["PUSHWIRE_BUS_URL"] == "kafka://kafka:9092"
    assert env["PUSHWIRE_REGISTRY_URL"] == "etcd://etcd:2379"
    assert env["PUSHWIRE_INSTANCE_ID"] == name
    assert env["PUSHWIRE_TRUSTED_PROXIES"] == "172.28.0.10/32"
    assert env["PUSHWIRE_KAFKA_IDEMPOTENT"] == "true"
    assert env["PUSHWIRE_KAFKA_REPLICATION"] == "1"


@pytest.mark.parametrize("name", INSTANCES)
def test_instance_depends_on_backing_services(services: dict, name: str) -> None:
    deps = depends_on(services[name])
    for backing in BACKING:
        assert deps.get(backing) == "service_healthy", f"{name} must wait for {backing} to be healthy"
    assert deps.get("migrate") == "service_completed_successfully"


def test_instances_build_the_image_and_share_one_secret(services: dict) -> None:
    keys = {environment(services[name])["PUSHWIRE_SECRET_KEY"] for name in INSTANCES}
    assert keys == {"${PUSHWIRE_SECRET_KEY:?set a secret}"}
    for name in (*INSTANCES, "migrate"):
        build = services[name].get("build")
        context = build.get("context") if isinstance(build, dict) else build
        assert context == ".", f"{name} must be built from the project"
    ids = {environment(services[name])["PUSHWIRE_INSTANCE_ID"] for name in INSTANCES}
    assert len(ids) == len(INSTANCES), "instance ids must differ"


def test_instance_settings_are_valid(services: dict) -> None:
    """The environment passes Pushwire's own settings validation (secret interpolated)."""
    from pushwire.settings import load_settings

    for name in INSTANCES:
        env = environment(services[name]) | {"PUSHWIRE_SECRET_KEY": "x" * 32}
        settings = load_settings(env)
        assert settings.instance_id == name
        assert settings.kafka_idempotent is True


def test_only_nginx_is_a_trusted_proxy(services: dict) -> None:
    """PUSHWIRE_TRUSTED_PROXIES names nginx's fixed address alone, one no other container can get."""
    compose = yaml.safe_load(COMPOSE.read_text())
    nginx_net = services["nginx"]["networks"]
    assert set(nginx_net) == {"default"}
    nginx_ip = ipaddress.ip_address(nginx_net["default"]["ipv4_address"])
    (pool,) = compose["networks"]["default"]["ipam"]["config"]
    subnet, dynamic = ipaddress.ip_network(pool["subnet"]), ipaddress.ip_network(pool["ip_range"])
    assert nginx_ip in subnet and nginx_ip not in dynamic and dynamic.subnet_of(subnet)
    for name in INSTANCES:
        trusted = [ipaddress.ip_network(c) for c in environment(services[name])["PUSHWIRE_TRUSTED_PROXIES"].split(",")]
        assert trusted == [ipaddress.ip_network(f"{nginx_ip}/32")], name
    # Every other service stays on the default network, with an address from the dynamic range.
    for name, service in services.items():
        if name != "nginx":
            assert set(service.get("networks") or ["default"]) == {"default"}, name
            assert "ipv4_address" not in str(service.get("networks", "")), name


def test_nginx_mounts_config(services: dict) -> None:
    nginx = services["nginx"]
    sources = []
    for volume in nginx.get("volumes", []):
        source = volume.get("source") if isinstance(volume, dict) else volume.split(":", 1)[0]
        sources.append(str(source).removeprefix("./"))
    assert "deploy/nginx.conf" in sources
    assert {"8080:80", "8443:443"} <= {str(p) for p in nginx.get("ports", [])}
    assert (ROOT / "deploy" / "nginx.conf").is_file()


def test_nginx_conf_balances_and_upgrades(nginx_conf: str) -> None:
    active = "\n".join(line.split("#", 1)[0] for line in nginx_conf.splitlines())
    assert re.search(r"\bip_hash\s*;", active)
    assert re.search(r"server\s+pushwire-1:8000\b", active)
    assert re.search(r"server\s+pushwire-2:8000\b", active)
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade\s*;", active)
    assert re.search(r"proxy_set_header\s+Connection\s+\$connection_upgrade\s*;", active)
    assert re.search(r"map\s+\$http_upgrade\s+\$connection_upgrade", active)
    assert re.search(r"proxy_http_version\s+1\.1\s*;", active)
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for\s*;", active)
    assert re.search(r"proxy_read_timeout\s+75s\s*;", active)
    assert re.search(r"client_max_body_size\s+1m\s*;", active)
    sse = re.search(r"location\s+/api/v1/sse\s*\{(.*?)\}", active, re.S)
    assert sse and re.search(r"proxy_buffering\s+off\s*;", sse.group(1))
    assert active.count("{") == active.count("}")


def test_nginx_tls_example_is_commented_out(nginx_conf: str) -> None:
    active = "\n".join(line.split("#", 1)[0] for line in nginx_conf.splitlines())
    assert "listen 443" not in active
    assert re.search(r"#\s*listen 443 ssl;", nginx_conf)
    assert re.search(r"#\s*ssl_certificate\s+/etc/nginx/certs/", nginx_conf)
    assert re.search(r"#\s*ssl_protocols\s+TLSv1\.2 TLSv1\.3;", nginx_conf)
