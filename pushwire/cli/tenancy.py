"""tenant, app, key, client-key and token commands."""

from __future__ import annotations

import time
from pathlib import Path

import click
import jwt

from pushwire.cli.common import Services, emit, json_option, record, run_async, settings_or_exit
from pushwire.names import is_user_id
from pushwire.tenants.views import AppCreated, ClientKeySecret, KeySecret, ServerKeyView


@click.group("tenant", help="Create and list tenants.")
def tenant() -> None: ...


@tenant.command("create")
@click.option("--name", required=True)
@json_option
def tenant_create(name: str, as_json: bool) -> None:
    async def work(s: Services) -> str:
        view = await s.tenancy.create_tenant(name)
        await record(s, "tenant.create", tenant_id=view.tenant_id, target=view.tenant_id, details={"name": name})
        return view.tenant_id

    emit({"tenant_id": run_async(settings_or_exit(), work)}, as_json)


@tenant.command("list")
@json_option
def tenant_list(as_json: bool) -> None:
    emit(run_async(settings_or_exit(), lambda s: s.tenancy.list_tenants(None)), as_json)


@click.group("app", help="Create and list apps.")
def app() -> None: ...


@app.command("create")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--name", required=True)
@click.option("--origin", "origins", multiple=True, help="Allowed WebSocket origin (repeat); none = any.")
@json_option
def app_create(tenant_id: str, name: str, origins: tuple[str, ...], as_json: bool) -> None:
    async def work(s: Services) -> AppCreated:
        created = await s.tenancy.create_app(tenant_id, name, list(origins))
        await record(
            s,
            "app.create",
            tenant_id=tenant_id,
            app_id=created.app_id,
            target=created.app_id,
            details={"name": name, "origins": list(origins)},
        )
        return created

    emit(run_async(settings_or_exit(), work), as_json)


@app.command("list")
@click.option("--tenant", "tenant_id", default=None)
@json_option
def app_list(tenant_id: str | None, as_json: bool) -> None:
    emit(run_async(settings_or_exit(), lambda s: s.tenancy.list_apps(tenant_id)), as_json)


@click.group("key", help="Server keys (sign the push API).")
def key() -> None: ...


@key.command("create")
@click.option("--app", "app_id", required=True)
@click.option("--scope", "scopes", multiple=True, help="push, presence:read, history:read (default: all three).")
@click.option("--allow-ip", "allow_ips", multiple=True, help="IPv4/IPv6 address or CIDR (repeat); none = any.")
@click.option("--label", default="")
@click.option("--operator", is_flag=True, help="Also allowed to call the operator API (/api/v1/admin/...).")
@json_option
def key_create(
    app_id: str, scopes: tuple[str, ...], allow_ips: tuple[str, ...], label: str, operator: bool, as_json: bool
) -> None:
    async def work(s: Services) -> KeySecret:
        secret = await s.tenancy.create_server_key(app_id, None, list(scopes), list(allow_ips), label, operator)
        await record(
            s,
            "server_key.create",
            app_id=app_id,
            target=secret.key_id,
            details={"scopes": list(scopes), "allow_ips": list(allow_ips), "operator": operator},
        )
        return secret

    emit(run_async(settings_or_exit(), work), as_json)


@key.command("revoke")
@click.argument("key_id")
@json_option
def key_revoke(key_id: str, as_json: bool) -> None:
    async def work(s: Services) -> ServerKeyView:
        view = await s.tenancy.revoke_server_key(key_id, None)
        await record(s, "server_key.revoke", app_id=view.app_id, target=key_id)
        return view

    view = run_async(settings_or_exit(), work)
    emit({"key_id": view.key_id, "revoked_at": view.revoked_at}, as_json)


@key.command("list")
@click.option("--app", "app_id", required=True)
@json_option
def key_list(app_id: str, as_json: bool) -> None:
    emit(run_async(settings_or_exit(), lambda s: s.tenancy.list_server_keys(app_id, None)), as_json)


@click.group("client-key", help="Client keys (verify end-user tokens).")
def client_key() -> None: ...


@client_key.command("create")
@click.option("--app", "app_id", required=True)
@click.option("--hs256", is_flag=True, help="Generate an HS256 secret.")
@click.option("--public-key", "public_key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def client_key_create(app_id: str, hs256: bool, public_key: Path | None, as_json: bool) -> None:
    if hs256 == (public_key is not None):
        raise click.UsageError("give exactly one of --hs256 or --public-key FILE.pem")
    pem = public_key.read_text() if public_key else None

    async def work(s: Services) -> ClientKeySecret:
        created = await s.tenancy.create_client_key(app_id, None, pem)
        await record(
            s,
            "client_key.create",
            app_id=app_id,
            target=created.kid,
            details={"alg": "RS/ES (public key)" if pem else "HS256"},
        )
        return created

    emit(run_async(settings_or_exit(), work), as_json)


@client_key.command("list")
@click.option("--app", "app_id", required=True)
@json_option
def client_key_list(app_id: str, as_json: bool) -> None:
    emit(run_async(settings_or_exit(), lambda s: s.tenancy.list_client_keys(app_id, None)), as_json)


@click.command("token", help="Mint a client JWT with the app's newest HS256 key (development convenience).")
@click.option("--app", "app_id", required=True)
@click.option("--user", "user_id", required=True)
@click.option("--ttl", default=3600, show_default=True, type=click.IntRange(1, 7 * 86400))
@click.option("--channel", "channels", multiple=True, help="Room the user may subscribe to; trailing * = prefix.")
def token(app_id: str, user_id: str, ttl: int, channels: tuple[str, ...]) -> None:
    if not is_user_id(user_id):
        raise click.BadParameter("user ids are 1..128 characters of [A-Za-z0-9_-=@,.;]", param_hint="--user")

    async def work(s: Services) -> str:
        kid, secret = await s.tenancy.hs256_signing_secret(app_id, None)
        return mint_token(app_id, user_id, kid, secret, ttl, list(channels))

    click.echo(run_async(settings_or_exit(), work))


def mint_token(app_id: str, user_id: str, kid: str, secret: str, ttl: int, channels: list[str]) -> str:
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "app": app_id, "iat": now, "exp": now + ttl}
    if channels:
        claims["channels"] = channels
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})


__all__ = ["app", "client_key", "key", "mint_token", "tenant", "token"]
