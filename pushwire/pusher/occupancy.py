"""Channel subscriber counts across the cluster, for the Pusher HTTP API (`/channels`).

Each instance publishes its own counts per app to the cache (`pusher:occ:{app}:{instance}`, one
value replaced whole) at most every PERIOD seconds for the apps whose counts changed, and every
REFRESH seconds for all of them; a reader sums the values of the live instances. Subscribing
touches only the hub's `changed` set: nothing remote is on the connect path. Counts are as old as
PERIOD plus the cache round trip; an instance that died stops counting when it leaves the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import msgspec

from pushwire.cache.base import Cache
from pushwire.errors import BackendUnavailable
from pushwire.realtime.hub import Hub
from pushwire.registry.base import Registry
from pushwire.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PERIOD = 0.2
REFRESH = 20.0
TTL = 3 * REFRESH
_COUNTS = msgspec.json.Decoder(dict[str, int])


def occupancy_key(app_id: str, instance_id: str) -> str:
    return f"pusher:occ:{app_id}:{instance_id}"


class LiveInstances:
    """The registry's live instance ids, read at most once a second."""

    def __init__(self, registry: Registry, instance_id: str) -> None:
        self.registry = registry
        self.instance_id = instance_id
        self._ids: frozenset[str] = frozenset()
        self._at = 0.0

    async def ids(self, fresh: bool = False) -> frozenset[str]:
        if fresh or time.monotonic() - self._at > 1.0:
            found = {info.id for info in await self.registry.instances()}
            self._ids = frozenset(found | {self.instance_id})
            self._at = time.monotonic()
        return self._ids

    def expire(self) -> None:
        """The registry changed: the next `ids()` reads it again."""
        self._at = 0.0


class Occupancy:
    def __init__(self, hub: Hub, cache: Cache, live: LiveInstances) -> None:
        self.hub = hub
        self.cache = cache
        self.live = live
        self.instance_id = live.instance_id
        # This instance's listed channels with subscribers, by app: kept from the hub's changes,
        # so a flush costs the channels that changed, not all of them.
        self._counts: dict[str, dict[str, int]] = {}
        self._published: set[str] = set()  # apps with a value of ours in the cache
        self._dirty: set[str] = set()  # apps whose counts changed since the last publish
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pusher-occupancy")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        with contextlib.suppress(Exception):
            if self._published:
                await self.cache.delete(*(occupancy_key(app, self.instance_id) for app in self._published))

    async def _run(self) -> None:
        next_refresh = time.monotonic() + REFRESH
        while True:
            await asyncio.sleep(PERIOD)
            refresh = time.monotonic() >= next_refresh
            if refresh:
                next_refresh = time.monotonic() + REFRESH
            try:
                await self.publish(refresh)
            except BackendUnavailable as exc:
                log.warning("channel counts not published (%s); retrying", exc)
            except Exception:
                log.exception("channel counts not published")

    def _take_changes(self) -> None:
        """Apply the hub's changed channels to `_counts`, marking their apps dirty."""
        changed, self.hub.changed = self.hub.changed, set()
        for app, channel in changed:  # the hub leaves out personal channels and `broadcast`
            self._dirty.add(app)
            n = self.hub.subscriber_count(app, channel)
            counts = self._counts.setdefault(app, {})
            if n:
                counts[channel] = n
            else:
                counts.pop(channel, None)
                if not counts:
                    del self._counts[app]

    async def publish(self, everything: bool = False) -> None:
        """This instance's counts of the apps that changed (all apps it counts, when `everything`)."""
        self._take_changes()
        apps, self._dirty = self._dirty, set()
        if everything:
            apps |= self._published | set(self._counts)
        if not apps:
            return
        values = {}
        gone = []
        for app in apps:
            counts = self._counts.get(app)
            if counts:
                values[occupancy_key(app, self.instance_id)] = msgspec.json.encode(counts)
            elif app in self._published:
                gone.append(occupancy_key(app, self.instance_id))
        try:
            if values:
                await self.cache.set_many(values, ttl=TTL)
            if gone:
                await self.cache.delete(*gone)
        except BaseException:
            self._dirty |= apps  # tried again next period
            raise
        for app in apps:
            if app in self._counts:
                self._published.add(app)
            else:
                self._published.discard(app)

    async def counts(self, app_id: str) -> dict[str, int]:
        """Subscribers per listed channel of the app, summed over the live instances (this one's
        read from its hub, exact and current)."""
        self._take_changes()
        total = dict(self._counts.get(app_id, {}))
        others = sorted(await self.live.ids() - {self.instance_id})
        values = await self.cache.get_many([occupancy_key(app_id, i) for i in others]) if others else []
        for raw in values:
            if raw:
                try:
                    for channel, n in _COUNTS.decode(raw).items():
                        total[channel] = total.get(channel, 0) + n
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
        return total
