"""What every command shares: settings loading with exit code 2, JSON/plain output, async services."""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import click
import msgspec

from pushwire.accounts.service import AccountService
from pushwire.cache.base import Cache
from pushwire.errors import BackendUnavailable, SettingsError
from pushwire.registry.base import Registry
from pushwire.settings import Settings, load_settings
from pushwire.storage.database import Database
from pushwire.tenants.changes import AppChange, cache_stamper, registry_publisher
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.service import Invalid, NotFound, TenancyService

T = TypeVar("T")

# Exit codes: 1 = the request was refused (bad input, not found), 2 = configuration or environment,
# or an argument value out of range (as click's own usage errors).
EXIT_REFUSED = 1
EXIT_CONFIG = 2
EXIT_USAGE = 2


def fail(message: str, code: int) -> None:
    click.echo(f"pushwire: {message}", err=True)
    sys.exit(code)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        fail(f"{exc.setting}: {exc.detail}", EXIT_CONFIG)
        raise AssertionError from exc  # unreachable: fail() exits


class Services(msgspec.Struct):
    settings: Settings
    db: Database
    tenancy: TenancyService
    accounts: AccountService


async def record(
    s: Services,
    action: str,
    *,
    app_id: str | None = None,
    tenant_id: str | None = None,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """Changes made from the command line go to the same audit log as the console's, actor `cli:<os user>`."""
    from pushwire.console.audit import AuditLog

    if tenant_id is None and app_id is not None:
        tenant_id = (await s.tenancy.get_app(app_id, None)).tenant_id
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        who = "unknown"
    await AuditLog(s.db).record(
        f"cli:{who}", action, tenant_id=tenant_id, app_id=app_id, target=target, details=details
    )


class Announcer:
    """Restamps the app in the shared cache (cached server keys are reloaded on their next request)
    and puts the service's change notices in the registry the running instances watch, so a key
    revoked here is refused and closes its connections everywhere. Connects on the first notice."""

    def __init__(self, cache_url: str, registry_url: str) -> None:
        self.cache_url = cache_url
        self.url = registry_url
        self.cache: Cache | None = None
        self.registry: Registry | None = None
        self.failed: set[str] = set()

    async def __call__(self, change: AppChange) -> None:
        await self._stamp(change)
        await self._publish(change)

    async def _stamp(self, change: AppChange) -> None:
        if "PUSHWIRE_CACHE_URL" in self.failed:
            return
        try:
            if self.cache is None:
                from pushwire.wiring import build_cache

                cache = build_cache(self.cache_url)
                await cache.start()
                self.cache = cache
            await cache_stamper(self.cache)(change)
        except Exception as exc:  # noqa: BLE001 - committed anyway; instances reload keys within 30 s
            self._warn("PUSHWIRE_CACHE_URL", "cache", exc)

    async def _publish(self, change: AppChange) -> None:
        if "PUSHWIRE_REGISTRY_URL" in self.failed:
            return
        try:
            if self.registry is None:
                from pushwire.wiring import build_registry

                registry = build_registry(self.url)
                await registry.start()
                self.registry = registry
            await registry_publisher(self.registry)(change)
        except Exception as exc:  # noqa: BLE001 - committed anyway; instances see it when their caches expire
            self._warn("PUSHWIRE_REGISTRY_URL", "registry", exc)

    def _warn(self, setting: str, what: str, exc: Exception) -> None:
        self.failed.add(setting)
        detail = exc.detail if isinstance(exc, BackendUnavailable) else str(exc) or type(exc).__name__
        click.echo(
            f"pushwire: warning: {setting}: {what} unreachable ({detail}); running instances apply this change within 30 s",
            err=True,
        )

    async def close(self) -> None:
        if self.cache is not None:
            await self.cache.close()
        if self.registry is not None:
            await self.registry.close()


@asynccontextmanager
async def services(settings: Settings) -> AsyncIterator[Services]:
    db = Database(settings.database_url)
    announcer = Announcer(settings.cache_url, settings.registry_url)
    try:
        await db.start()
        box = SecretBox(settings.secret_key)
        tenancy = TenancyService(db, box, settings.limit_maxima, on_change=announcer)
        yield Services(settings, db, tenancy, AccountService(db))
    finally:
        await announcer.close()
        await db.close()


def run_async(settings: Settings, work: Callable[[Services], Awaitable[T]]) -> T:
    """Run `work` with database-backed services; map known failures to one line and an exit code."""

    async def main() -> T:
        async with services(settings) as svc:
            return await work(svc)

    try:
        return asyncio.run(main())
    except BackendUnavailable as exc:
        fail(f"PUSHWIRE_DATABASE_URL: {exc.backend} unreachable: {exc.detail}", EXIT_CONFIG)
    except Invalid as exc:
        fail(str(exc), EXIT_REFUSED)
    except NotFound as exc:
        fail(f"not found: {exc}", EXIT_REFUSED)
    raise AssertionError("unreachable")


def emit(value: Any, as_json: bool, plain: Callable[[Any], str] | None = None) -> None:
    if as_json:
        click.echo(msgspec.json.encode(value).decode())
    else:
        click.echo(plain(value) if plain else _plain(msgspec.to_builtins(value)))


def _plain(value: Any, indent: str = "") -> str:
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{indent}{k}:")
                lines.append(_plain(v, indent + "  "))
            else:
                lines.append(f"{indent}{k}: {v}")
        return "\n".join(lines)
    if isinstance(value, list):
        return "\n".join(_plain(v, indent + "- ") if isinstance(v, dict) else f"{indent}- {v}" for v in value)
    return f"{indent}{value}"


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
