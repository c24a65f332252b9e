"""Operator commands that change what running instances enforce: app limits, app and tenant
switches, client-key revocation. Each is audited (actor `cli:<user>`) and announced through the
registry, so open connections that lose their credentials are closed (4001) on every instance."""

from __future__ import annotations

from typing import Any

import click
import msgspec

from pushwire.cli.common import EXIT_USAGE, Services, emit, fail, json_option, record, run_async, settings_or_exit
from pushwire.cli.tenancy import app, client_key, tenant
from pushwire.tenants.limits import LimitsInvalid, parse_limit
from pushwire.tenants.views import AppView, TenantView

# CLI flag → AppLimits field.
LIMIT_FLAGS = {
    "push_rate": "--push-rate",
    "push_burst": "--push-burst",
    "max_connections": "--max-connections",
    "max_connections_per_user": "--max-connections-per-user",
    "max_payload_bytes": "--max-payload-bytes",
    "hot_history_size": "--hot-history",
    "retention_days": "--retention-days",
    "max_token_lifetime": "--max-token-lifetime",
}


def _limit_options(command: Any) -> Any:
    # Strings, parsed by parse_limit: one clear line (and exit 2) for "abc", "1.5", 0 or too much.
    for field, flag in reversed(LIMIT_FLAGS.items()):
        command = click.option(flag, field, default=None, metavar="N", help=f"New {field.replace('_', ' ')}.")(command)
    return command


def _changes(before: AppView, after: AppView) -> dict[str, Any]:
    """{field: {from, to}} like the console's app.update entries."""
    old, new = msgspec.to_builtins(before), msgspec.to_builtins(after)
    out = {k: {"from": old[k], "to": new[k]} for k in ("enabled", "allowed_origins") if old[k] != new[k]}
    out.update({k: {"from": old["limits"][k], "to": v} for k, v in new["limits"].items() if old["limits"][k] != v})
    return out


@app.command("limits")
@click.option("--app", "app_id", required=True)
@_limit_options
@json_option
def app_limits(app_id: str, as_json: bool, **given: str | None) -> None:
    """Print the app's limits; with options, change them (up to the PUSHWIRE_MAX_* maxima)."""
    settings = settings_or_exit()
    wanted: dict[str, int] = {}
    for field, raw in given.items():
        if raw is None:
            continue
        try:
            wanted[field] = parse_limit(field, raw, settings.limit_maxima)
        except LimitsInvalid as exc:
            fail(f"{LIMIT_FLAGS[field]}: {exc}", EXIT_USAGE)

    async def work(s: Services) -> AppView:
        before = await s.tenancy.get_app(app_id, None)
        if not wanted:
            return before
        limits = msgspec.structs.replace(before.limits, **wanted)
        after = await s.tenancy.update_app(app_id, None, limits=limits)
        changes = _changes(before, after)
        if changes:
            await record(s, "app.update", tenant_id=after.tenant_id, app_id=app_id, target=app_id, details=changes)
        return after

    view = run_async(settings, work)
    result = {
        "app_id": view.app_id,
        "limits": msgspec.to_builtins(view.limits),
        "maxima": msgspec.to_builtins(settings.limit_maxima),
    }
    emit(result, as_json)


def _switch_app(app_id: str, enabled: bool) -> AppView:
    async def work(s: Services) -> AppView:
        before = await s.tenancy.get_app(app_id, None)
        after = await s.tenancy.update_app(app_id, None, enabled=enabled)
        if after != before:
            await record(
                s,
                "app.update",
                tenant_id=after.tenant_id,
                app_id=app_id,
                target=app_id,
                details=_changes(before, after),
            )
        return after

    return run_async(settings_or_exit(), work)


@app.command("disable")
@click.argument("app_id")
@json_option
def app_disable(app_id: str, as_json: bool) -> None:
    """Refuse the app's pushes and connections; its open connections are closed (4001)."""
    emit({"app_id": app_id, "enabled": _switch_app(app_id, False).enabled}, as_json)


@app.command("enable")
@click.argument("app_id")
@json_option
def app_enable(app_id: str, as_json: bool) -> None:
    emit({"app_id": app_id, "enabled": _switch_app(app_id, True).enabled}, as_json)


def _switch_tenant(tenant_id: str, disabled: bool) -> TenantView:
    async def work(s: Services) -> TenantView:
        view = await s.tenancy.set_tenant_disabled(tenant_id, disabled)
        action = "tenant.disable" if disabled else "tenant.enable"
        await record(s, action, tenant_id=tenant_id, target=tenant_id)
        return view

    return run_async(settings_or_exit(), work)


@tenant.command("disable")
@click.argument("tenant_id")
@json_option
def tenant_disable(tenant_id: str, as_json: bool) -> None:
    """Refuse every app of the tenant; their open connections are closed (4001)."""
    emit(_switch_tenant(tenant_id, True), as_json)


@tenant.command("enable")
@click.argument("tenant_id")
@json_option
def tenant_enable(tenant_id: str, as_json: bool) -> None:
    emit(_switch_tenant(tenant_id, False), as_json)


@client_key.command("revoke")
@click.option("--app", "app_id", required=True)
@click.argument("kid")
@json_option
def client_key_revoke(app_id: str, kid: str, as_json: bool) -> None:
    """Revoke a client key: its tokens are refused and its open connections closed (4001)."""

    async def work(s: Services) -> None:
        await s.tenancy.revoke_client_key(kid, app_id, None)
        await record(s, "client_key.revoke", app_id=app_id, target=kid)

    run_async(settings_or_exit(), work)
    emit({"kid": kid, "app_id": app_id, "revoked": True}, as_json)


__all__ = ["app_limits", "client_key_revoke", "tenant_disable", "tenant_enable"]
