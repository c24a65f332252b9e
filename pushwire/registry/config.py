"""Global configuration under `<registry prefix>config/`, watched and applied live on every instance.

Values are JSON. Known keys (SCHEMA; others are kept and shown, for forward compatibility):
- `heartbeat` (int seconds, 1..600): the client heartbeat announced to new connections and enforced;
- `push_enabled` (bool): a maintenance switch; false makes the push API answer 503.

Writers validate first (`validate`, used by `pushwire config set`); a value that reaches an
instance anyway (written straight to etcd) is logged and ignored, keeping the previous value,
so a bad write can never stop the liveness loop or close every session.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pushwire.registry.base import Registry, Watch, WatchEvent

log = logging.getLogger(__name__)

PREFIX = "config/"


class ConfigInvalid(ValueError):
    """A value the schema refuses; the message is one line for a person."""


def _int_between(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        # bool is an int subclass: `true` is not a heartbeat.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigInvalid(f"must be a whole number of seconds between {low} and {high}, not {value!r}")
        if not low <= value <= high:
            raise ConfigInvalid(f"must be between {low} and {high}, not {value}")
        return value

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigInvalid(f"must be true or false, not {value!r}")
    return value


SCHEMA: dict[str, Callable[[Any], Any]] = {
    "heartbeat": _int_between(1, 600),
    "push_enabled": _boolean,
}


def validate(key: str, value: Any, *, known_only: bool = False) -> Any:
    """The value if the schema accepts it; raises ConfigInvalid naming the key otherwise.
    Unknown keys pass unless `known_only` (the CLI refuses them: most likely a typo)."""
    check = SCHEMA.get(key)
    if check is None:
        if known_only:
            raise ConfigInvalid(f"unknown config key {key!r}; known keys: {', '.join(sorted(SCHEMA))}")
        return value
    try:
        return check(value)
    except ConfigInvalid as exc:
        raise ConfigInvalid(f"{key} {exc}") from None


class LiveConfig:
    def __init__(self, registry: Registry, defaults: dict[str, Any]) -> None:
        self.registry = registry
        self.defaults = dict(defaults)
        self.values: dict[str, Any] = {}
        self.changes = 0
        self._watch: Watch | None = None
        self._listeners: list[Callable[[str, Any], None]] = []

    def get(self, key: str) -> Any:
        return self.values.get(key, self.defaults.get(key))

    def effective(self) -> dict[str, Any]:
        return {**self.defaults, **self.values}

    def on_change(self, listener: Callable[[str, Any], None]) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        # Watch first, then read: a change between the two is seen by the watch.
        self._watch = await self.registry.watch_prefix(PREFIX, self._event)
        for key, raw in (await self.registry.get_prefix(PREFIX)).items():
            self._apply(key.removeprefix(PREFIX), raw)

    async def stop(self) -> None:
        if self._watch is not None:
            await self._watch.cancel()

    async def put(self, key: str, value: Any) -> None:
        value = validate(key, value)
        await self.registry.put(PREFIX + key, json.dumps(value).encode())

    async def _event(self, event: WatchEvent) -> None:
        key = event.key.removeprefix(PREFIX)
        if event.kind == "delete":
            self.values.pop(key, None)
            self._notify(key, self.get(key))
        else:
            self._apply(key, event.value or b"null")

    def _apply(self, key: str, raw: bytes) -> None:
        try:
            value = validate(key, json.loads(raw))
        except ConfigInvalid as exc:
            log.warning("config %s ignored (keeping %r): %s", key, self.get(key), exc)
            return
        except ValueError:
            log.warning("config %s ignored (keeping %r): not JSON", key, self.get(key))
            return
        self.values[key] = value
        self._notify(key, value)

    def _notify(self, key: str, value: Any) -> None:
        self.changes += 1
        for listener in self._listeners:
            try:
                listener(key, value)
            except Exception:
                log.exception("config %s=%r not applied", key, value)
