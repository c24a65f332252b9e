"""run, database and demo commands."""

from __future__ import annotations

import asyncio
import logging
import secrets

import click
import msgspec

from pushwire.cli.common import EXIT_CONFIG, Services, emit, fail, json_option, run_async, settings_or_exit
from pushwire.settings import Settings
from pushwire.storage.migrate import upgrade
from pushwire.wiring import StartupError, build_backends, close_backends, start_backends


@click.command("run", help="Serve one instance.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--log-level", default="info", show_default=True)
def run(host: str, port: int, log_level: str) -> None:
    import uvicorn

    from pushwire.app import create_app

    settings = settings_or_exit()
    if not settings.advertise_address:
        settings = msgspec.structs.replace(settings, advertise_address=f"{host}:{port}")
    check_backends(settings)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        # Compression off by default: ~3x the memory per idle connection when negotiated.
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_max_size=64 * 1024,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )


def check_backends(settings: Settings) -> None:
    """Fail fast, before binding the port, with one line naming the setting (exit code 2)."""

    async def probe() -> None:
        backends = build_backends(settings)
        await start_backends(backends)
        await close_backends(backends)

    # Client libraries log their own connection errors; the one line below says it all.
    logging.disable(logging.CRITICAL)
    try:
        asyncio.run(probe())
    except StartupError as exc:
        fail(str(exc), EXIT_CONFIG)
    finally:
        logging.disable(logging.NOTSET)


@click.group("database", help="Schema migrations.")
def database() -> None: ...


@database.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@json_option
def database_upgrade(revision: str, as_json: bool) -> None:
    settings = settings_or_exit()
    try:
        upgrade(settings.database_url, revision)
    except Exception as exc:  # noqa: BLE001 - Alembic and drivers raise many types; report one line
        fail(f"PUSHWIRE_DATABASE_URL: upgrade failed: {str(exc).splitlines()[0][:300]}", EXIT_CONFIG)
    emit({"database": "upgraded", "revision": revision}, as_json)


class DemoCredentials(msgspec.Struct, omit_defaults=True):
    created: bool
    tenant_id: str
    app_id: str
    server_key: dict[str, str] | None = None
    client_key: dict[str, str] | None = None
    console: dict[str, str] | None = None


@click.command("demo", help="Create a demo tenant, app, keys and console operator unless they exist.")
@click.option("--email", default="admin@example.com", show_default=True)
@json_option
def demo(email: str, as_json: bool) -> None:
    async def work(s: Services) -> DemoCredentials:
        tenants = [t for t in await s.tenancy.list_tenants(None) if t.name == "demo"]
        if tenants:
            apps = await s.tenancy.list_apps(tenants[0].tenant_id)
            return DemoCredentials(created=False, tenant_id=tenants[0].tenant_id, app_id=apps[0].app_id if apps else "")
        tenant = await s.tenancy.create_tenant("demo")
        created = await s.tenancy.create_app(tenant.tenant_id, "demo")
        password = secrets.token_urlsafe(12)
        console = None
        if await s.accounts.count_operators() == 0:
            await s.accounts.create_user(email, password, "operator", None)
            console = {"email": email, "password": password}
        return DemoCredentials(
            created=True,
            tenant_id=tenant.tenant_id,
            app_id=created.app_id,
            server_key=msgspec.to_builtins(created.server_key),
            client_key=msgspec.to_builtins(created.client_key),
            console=console,
        )

    creds = run_async(settings_or_exit(), work)
    if as_json:
        emit(creds, True)
        return
    if not creds.created:
        click.echo(
            f"Demo tenant {creds.tenant_id} (app {creds.app_id}) exists; its secrets were shown when it was made."
        )
        return
    click.echo("Demo credentials (shown once; secrets are stored encrypted or hashed):")
    emit(creds, False)
