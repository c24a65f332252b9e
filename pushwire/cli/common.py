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
from pushwire.errors import BackendUnavailable, SettingsError
from pushwire.settings import Settings, load_settings
from pushwire.storage.database import Database
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.service import Invalid, NotFound, TenancyService

T = TypeVar("T")

# Exit codes: 1 = the request was refused (bad input, not found), 2 = configuration or environment.
EXIT_REFUSED = 1
EXIT_CONFIG = 2


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


@asynccontextmanager
async def services(settings: Settings) -> AsyncIterator[Services]:
    db = Database(settings.database_url)
    try:
        await db.start()
        yield Services(settings, db, TenancyService(db, SecretBox(settings.secret_key)), AccountService(db))
    finally:
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
