"""Global configuration under `<registry prefix>config/`, watched and applied live on every instance.

Values are JSON. Known keys (others are kept and shown, for forward compatibility):
- `heartbeat` (int seconds): the client heartbeat announced to new connections and enforced;
- `push_enabled` (bool): a maintenance switch; false makes the push API answer 503.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pushwire.registry.base import Registry, Watch, WatchEvent

log = logging.getLogger(__name__)

PREFIX = "config/"


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
            value = json.loads(raw)
        except ValueError:
            log.warning("config %s ignored: not JSON", key)
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
