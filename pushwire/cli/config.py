"""config commands: read and change the global config every instance watches."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from pushwire.cli.common import EXIT_CONFIG, EXIT_USAGE, emit, fail, json_option, settings_or_exit
from pushwire.errors import BackendUnavailable
from pushwire.registry.config import PREFIX, SCHEMA, ConfigInvalid, validate
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


@config.command(
    "set",
    help=f"VALUE is JSON (e.g. 30, true). Keys: {', '.join(sorted(SCHEMA))}.",
    # A negative VALUE is a value to refuse with its reason, not an unknown option.
    context_settings={"ignore_unknown_options": True},
)
@click.argument("key")
@click.argument("value")
def config_set(key: str, value: str) -> None:
    # Validated before anything is stored: every instance applies what is stored, at once.
    try:
        parsed = validate(key, json.loads(value), known_only=True)
    except ConfigInvalid as exc:
        fail(f"config {exc}", EXIT_USAGE)
    except ValueError:
        fail(f"config {key}: VALUE must be JSON, e.g. 30 or true, not {value!r}", EXIT_USAGE)
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
    emit({k.removeprefix(PREFIX): _shown(v) for k, v in raw.items()}, as_json)


def _shown(raw: bytes) -> Any:
    """A stored value as JSON; one written around the CLI may not be (instances ignore it)."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
