"""config commands: read and change the global config every instance watches."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from pushwire.cli.common import EXIT_CONFIG, emit, fail, json_option, settings_or_exit
from pushwire.errors import BackendUnavailable
from pushwire.registry.config import PREFIX
from pushwire.wiring import build_registry


async def _with_registry(url: str, work: Any) -> Any:
    registry = build_registry(url)
    await registry.start()
    try:
        return await work(registry)
    finally:
        await registry.close()


@click.group("config", help="Global config (etcd): applied live on every instance.")
def config() -> None: ...


@config.command("set")
@click.argument("key")
@click.argument("value")
def config_set(key: str, value: str) -> None:
    """VALUE is JSON (e.g. 30, true, "text")."""
    try:
        parsed = json.loads(value)
    except ValueError:
        raise click.BadParameter("VALUE must be JSON, e.g. 30, true or '\"text\"'") from None
    settings = settings_or_exit()
    try:
        asyncio.run(_with_registry(settings.registry_url, lambda r: r.put(PREFIX + key, json.dumps(parsed).encode())))
    except BackendUnavailable as exc:
        fail(f"PUSHWIRE_REGISTRY_URL: registry unreachable: {exc.detail}", EXIT_CONFIG)


@config.command("show")
@json_option
def config_show(as_json: bool) -> None:
    settings = settings_or_exit()
    try:
        raw = asyncio.run(_with_registry(settings.registry_url, lambda r: r.get_prefix(PREFIX)))
    except BackendUnavailable as exc:
        fail(f"PUSHWIRE_REGISTRY_URL: registry unreachable: {exc.detail}", EXIT_CONFIG)
    emit({k.removeprefix(PREFIX): json.loads(v) for k, v in raw.items()}, as_json)
