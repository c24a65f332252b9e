"""run, relay, database and demo commands."""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
import re
import secrets
import signal
from typing import Any

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
@click.option(
    "--no-relay", "no_relay", is_flag=True, help="Run no outbox relay here: a `pushwire relay` process sends the rows."
)
def run(host: str, port: int, log_level: str, no_relay: bool) -> None:
    import uvicorn

    from pushwire.app import create_app
    from pushwire.realtime.transports.direct import DirectWebSocketProtocol
    from pushwire.runtime import Runtime
    from pushwire.web.http_protocol import HttpProtocol

    settings = settings_or_exit()
    if not settings.advertise_address:
        settings = msgspec.structs.replace(settings, advertise_address=f"{host}:{port}")
    check_backends(settings)
    app = create_app(settings, Runtime.build(settings, relay=not no_relay))
    tune_gc()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        # Only PUSHWIRE_TRUSTED_PROXIES decides whose X-Forwarded-For is believed (tenants/ip_allow):
        # uvicorn's own handling would rewrite the peer address from loopback's header first.
        proxy_headers=False,
        access_log=settings.access_log,
        log_config=log_config(settings.access_log),
        # uvicorn's websockets-sansio, plus direct frame writes (realtime/transports/direct.py).
        # Compression off by default: ~3x the memory per idle connection when negotiated.
        ws=DirectWebSocketProtocol,
        http=HttpProtocol,  # addresses without a socket object per connection (web/http_protocol.py)
        ws_per_message_deflate=False,
        ws_max_size=64 * 1024,
        # No per-connection ping timer: the hub's one tick pings quiet clients (realtime/hub.py).
        ws_ping_interval=None,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )


def tune_gc() -> None:
    """Every connection keeps a few hundred objects alive, so with the default thresholds the
    cyclic collector rescans the whole heap over and over while clients connect: 2,000 connects
    spent ~0.9 ms each in it, in pauses of up to ~280 ms. What was built at start-up is frozen
    (never scanned again) and young objects are collected in larger, rarer batches."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


@click.command("relay", help="Run only the outbox relay (and the retention sweep), as a process of its own.")
@click.option("--log-level", default="info", show_default=True)
def relay(log_level: str) -> None:
    settings = settings_or_exit()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("pushwire").setLevel(log_level.upper())
    try:
        asyncio.run(serve_relay(settings))
    except StartupError as exc:
        fail(str(exc), EXIT_CONFIG)


async def serve_relay(settings: Settings) -> None:
    """Until SIGINT or SIGTERM; then the pending rows are sent and the shards freed."""
    from pushwire.messaging.relay import IDLE_POLL
    from pushwire.roles.relay import RelayProcess

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    process = RelayProcess.build(settings)
    # Client libraries log their own connection errors at start; StartupError's one line says it all.
    logging.disable(logging.CRITICAL)
    try:
        await process.start()
    finally:
        logging.disable(logging.NOTSET)
    logging.getLogger(__name__).info(
        "relay %s started: outbox shards polled every %d ms", settings.instance_id, IDLE_POLL * 1000
    )
    try:
        await stop.wait()
    finally:
        await process.stop()


# A query parameter named token (or ending in token: access_token) carries a client credential.
_TOKEN_PARAM = re.compile(r"(?i)([?&;][^=&?;\s\"]*token=)[^&;#\s\"]*")
# Per-connection WebSocket lines on uvicorn's server logger: uvicorn's handshake line (with the
# URL) and the websockets library's "connection open" / "connection rejected (401 ...)".
_WS_LINES = ('%s - "WebSocket %s"', "connection open", "connection closed", "connection rejected")


def redact(text: str) -> str:
    return _TOKEN_PARAM.sub(r"\1***", text) if "token=" in text.lower() else text


class UvicornLogFilter(logging.Filter):
    """Redacts token query parameters from uvicorn's records; with `quiet_websockets`, drops
    its per-connection WebSocket lines (one per client connect: noise, and they carry the URL)."""

    def __init__(self, quiet_websockets: bool = False) -> None:
        super().__init__()
        self.quiet_websockets = quiet_websockets

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            if self.quiet_websockets and record.msg.startswith(_WS_LINES):
                return False
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def log_config(access_log: bool) -> dict[str, Any]:
    """uvicorn's logging set-up with the filter on its access and server loggers."""
    import uvicorn.config

    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    name = f"{__name__}.UvicornLogFilter"
    config["filters"] = {
        "redact": {"()": name},
        # The WebSocket handshake lines are access-log lines in all but name: off with it.
        "server": {"()": name, "quiet_websockets": not access_log},
    }
    config["loggers"]["uvicorn.access"]["filters"] = ["redact"]
    config["loggers"]["uvicorn.error"]["filters"] = ["server"]
    return config


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
