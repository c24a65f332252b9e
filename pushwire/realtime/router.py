"""Bus consumer → Hub. Every instance consumes every tenant topic; only subscribers cost work.

Records of one channel arrive in offset order (keyed by channel). A bounded map of the last
offset seen per (app, channel, epoch) drops bus redeliveries before they reach the hub.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Sequence

import msgspec

from pushwire.bus.base import Bus, BusRecord, PartitionLag, Subscription
from pushwire.messaging.envelope import ENCODER, ENVELOPE_DECODER
from pushwire.realtime.hub import Hub

log = logging.getLogger(__name__)

SEEN_CHANNELS = 200_000


class Router:
    def __init__(self, bus: Bus, hub: Hub, topic_prefix: str, group: str) -> None:
        self.bus = bus
        self.hub = hub
        self.pattern = re.escape(topic_prefix) + r"\..+"
        self.group = group
        self._seen: OrderedDict[tuple[str, str, str], int] = OrderedDict()
        self._subscription: Subscription | None = None
        self.received = 0
        self.duplicates = 0

    async def start(self) -> None:
        # From the earliest record of a topic this group has no position in: a tenant topic created
        # after start-up must not lose its first records to "latest". The group (one per instance
        # id) keeps its committed position across restarts, and old records cost a decode only.
        self._subscription = await self.bus.subscribe(self.pattern, self.group, self.handle, from_beginning=True)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.stop()

    def lag(self) -> list[PartitionLag]:
        return self._subscription.lag() if self._subscription is not None else []

    async def handle(self, records: Sequence[BusRecord]) -> None:
        for record in records:
            self.received += 1
            try:
                envelope = ENVELOPE_DECODER.decode(record.value)
            except msgspec.DecodeError:
                log.error("undecodable record at %s/%d@%d dropped", record.topic, record.partition, record.offset)
                continue
            m = envelope.message
            key = (envelope.app_id, m.channel, m.epoch)
            last = self._seen.get(key)
            if last is not None and m.offset <= last:
                self.duplicates += 1
                continue
            self._seen[key] = m.offset
            self._seen.move_to_end(key)
            if len(self._seen) > SEEN_CHANNELS:
                self._seen.popitem(last=False)
            if self.hub.has_subscribers(envelope.app_id, m.channel):
                self.hub.deliver(envelope.app_id, m.channel, m.offset, ENCODER.encode(m).decode())
