"""Ending open connections whose credentials no longer hold, on every instance.

The tenancy service announces changes (tenants/changes.py) under `changes/apps/<app_id>` in the
registry; each instance watches that prefix and, for the app named: forgets its cached client
and server keys (so a revoked key is refused at once, not after the cache's TTL), then re-checks every open
session of the app and closes those refused with 4001 (get a new token before reconnecting).
Not a hot path: it runs once per change, with one key load per (app, kid) in use here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import msgspec

from pushwire.realtime.hub import Hub
from pushwire.realtime.protocol import Close
from pushwire.realtime.tokens import ClientTokenVerifier
from pushwire.registry.base import Registry, Watch, WatchEvent
from pushwire.tenants.changes import PREFIX, AppChange, decode, registry_publisher

log = logging.getLogger(__name__)


class Revocation:
    def __init__(
        self,
        registry: Registry,
        hub: Hub,
        tokens: ClientTokenVerifier,
        forget: Sequence[Callable[[str], None]] = (),
    ) -> None:
        self.registry = registry
        self.hub = hub
        self.tokens = tokens
        # Other in-process caches of the app's credentials (the server keys of the push API).
        self.forget = tuple(forget)
        self.publish = registry_publisher(registry)
        self.applied = 0  # notices handled (tests and the logs)
        self.closed = 0  # sessions closed because of them
        self._watch: Watch | None = None
        # Re-checks the app's other kinds of sessions (the Pusher protocol's, keyed by server
        # key), returning how many it closed; set by the runtime.
        self.also: Callable[[str], Awaitable[int]] | None = None

    async def start(self) -> None:
        self._watch = await self.registry.watch_prefix(PREFIX, self._event)

    async def stop(self) -> None:
        if self._watch is not None:
            await self._watch.cancel()
            self._watch = None

    async def _event(self, event: WatchEvent) -> None:
        if event.kind != "put" or not event.value:
            return
        try:
            change = decode(event.value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("ignored a malformed change notice under %s", event.key)
            return
        await self.apply(change)

    async def apply(self, change: AppChange) -> int:
        """Forget the app's cached keys and close its sessions that are no longer authorised."""
        self.tokens.invalidate(change.app_id)
        for forget in self.forget:
            forget(change.app_id)
        closed = 0
        for session in [s for s in self.hub.sessions.values() if s.app_id == change.app_id]:
            if session.closing is not None or session.transport.kind == "pusher":
                continue
            try:
                reason = await self.tokens.revalidate(session.identity)
            except Exception:  # a database hiccup: keep the session, the next notice re-checks
                log.exception("could not re-check session %s of app %s", session.id, change.app_id)
                continue
            if reason is not None:
                session.close_soon(Close.UNAUTHORIZED, reason)
                closed += 1
        if self.also is not None:
            closed += await self.also(change.app_id)
        self.applied += 1
        self.closed += closed
        if closed:
            log.info("%s on app %s: closed %d sessions (4001)", change.kind, change.app_id, closed)
        return closed
