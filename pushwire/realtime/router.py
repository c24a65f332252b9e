"""Bus consumer → Hub. Every instance consumes every tenant topic; only subscribers cost work.

Records of one channel arrive in offset order (keyed by channel). A bounded map of the last
offset seen per (app, channel, epoch) drops bus redeliveries before they reach the hub. The
relay's route header (app, epoch, offset; the channel is the key) lets both checks run before the
value is read, so a record no local connection follows costs no decode.
Tracing and metrics touch only records that reach local subscribers (once per record, never
per connection beyond the capped hub.deliver spans).

The relay of this instance also hands it the rows it sends (`deliver_committed`), so local
subscribers get a message without waiting for the bus round trip; the same map then drops the
bus copy. A channel's rows all pass through the one relay holding its shard, in offset order;
a row goes the local way only if it is the next offset after the last one delivered, so the
two paths never make a hole. Sampled messages take the bus path only (their delivery spans).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Sequence

import msgspec

from pushwire.bus.base import Bus, BusRecord, PartitionLag, Subscription
from pushwire.messaging.envelope import (
    ENCODER,
    ENVELOPE_DECODER,
    MESSAGE_HEAD_DECODER,
    ROUTE,
    ROUTED_ENVELOPE_DECODER,
    BusEnvelope,
    Committed,
    parse_route,
)
from pushwire.metrics import Metrics
from pushwire.realtime.hub import Hub
from pushwire.realtime.read_sync import KIND as READ_KIND
from pushwire.realtime.read_sync import ReadSync
from pushwire.tracing.context import header, is_sampled
from pushwire.tracing.delivery import RouteTracer

log = logging.getLogger(__name__)

SEEN_CHANNELS = 200_000


class Router:
    def __init__(
        self,
        bus: Bus,
        hub: Hub,
        topic_prefix: str,
        group: str,
        metrics: Metrics | None = None,
        tracer: RouteTracer | None = None,
    ) -> None:
        self.bus = bus
        self.hub = hub
        self.pattern = re.escape(topic_prefix) + r"\..+"
        self.group = group
        self.metrics = metrics or Metrics()
        self.tracer = tracer
        self._seen: OrderedDict[tuple[str, str, str], int] = OrderedDict()
        self._subscription: Subscription | None = None
        # Set by the runtime: read notices (acks made on other instances) share the tenant topics.
        self.read_sync: ReadSync | None = None
        self._ts: tuple[str, float] = ("", 0.0)
        self.received = 0
        self.duplicates = 0
        self.local = 0  # messages delivered from this instance's relay, ahead of the bus

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
        received_ns = time.time_ns()
        for record in records:
            self.received += 1
            headers = record.headers
            if headers:
                first = headers[0]
                if first == READ_KIND:
                    if self.read_sync is not None:
                        self.read_sync.deliver(record)
                    continue
                route = parse_route(first[1]) if first[0] == ROUTE else None
                if route is not None:
                    self._routed(record, route, received_ns)
                    continue
            self._decoded(record, received_ns)

    def _routed(self, record: BusRecord, route: tuple[str, str, int], received_ns: int) -> None:
        """A record with a route header: deduped and matched to local subscribers before its value
        is read; the value is then split, not decoded (the message's bytes are the frame)."""
        app_id, epoch, offset = route
        channel = record.key.decode()
        if not self._first(app_id, channel, epoch, offset) or not self.hub.has_subscribers(app_id, channel):
            return
        if self.tracer is not None:
            traceparent = header(record.headers)
            if traceparent is not None and is_sampled(traceparent):
                self._traced(record, traceparent, received_ns)
                return
        try:
            frame = bytes(ROUTED_ENVELOPE_DECODER.decode(record.value).message).decode()
        except (msgspec.DecodeError, UnicodeDecodeError):
            log.error("undecodable record at %s/%d@%d dropped", record.topic, record.partition, record.offset)
            return
        n = self.hub.deliver(app_id, channel, offset, frame)
        if n > 0:
            # `ts` follows the tenant's data (last but for the Pusher fields): found, not decoded.
            i = frame.rfind(',"ts":"')
            ts = frame[i + 7 : frame.find('"', i + 7)] if i > 0 else ""
            self.metrics.message_out(app_id, n, time.time() - self._accepted_at(ts))

    def _traced(self, record: BusRecord, traceparent: bytes, received_ns: int) -> None:
        envelope = self._envelope(record)
        if envelope is not None:
            self._deliver(envelope, record, traceparent, received_ns)

    def _decoded(self, record: BusRecord, received_ns: int) -> None:
        """A record without a route header (produced before it existed): decoded to be routed."""
        envelope = self._envelope(record)
        if envelope is None:
            return
        m = envelope.message
        if not self._first(envelope.app_id, m.channel, m.epoch, m.offset):
            return
        if self.hub.has_subscribers(envelope.app_id, m.channel):
            traceparent = header(record.headers) if self.tracer is not None else None
            sampled = traceparent if traceparent is not None and is_sampled(traceparent) else None
            self._deliver(envelope, record, sampled, received_ns)

    def _envelope(self, record: BusRecord) -> BusEnvelope | None:
        try:
            return ENVELOPE_DECODER.decode(record.value)
        except msgspec.DecodeError:
            log.error("undecodable record at %s/%d@%d dropped", record.topic, record.partition, record.offset)
            return None

    def _deliver(self, envelope: BusEnvelope, record: BusRecord, traceparent: bytes | None, received_ns: int) -> None:
        """A decoded message to local subscribers, through the tracer when it is sampled."""
        m = envelope.message
        frame = ENCODER.encode(m).decode()
        if traceparent is not None:
            assert self.tracer is not None
            n = self.tracer.deliver(self.hub, envelope, record, traceparent, frame, received_ns)
        else:
            n = self.hub.deliver(envelope.app_id, m.channel, m.offset, frame)
        if n > 0:
            self.metrics.message_out(envelope.app_id, n, time.time() - self._accepted_at(m.ts))

    def deliver_committed(self, rows: Sequence[Committed]) -> None:
        """Rows this instance's relay is sending: to local subscribers now (committed already)."""
        for row in rows:
            if row.traceparent is not None and is_sampled(row.traceparent):
                continue  # traced end to end through the bus
            key = (row.app_id, row.channel, row.epoch)
            if self._seen.get(key) != row.offset - 1:
                # Only the next offset of a channel the router already follows: past a row left to
                # the bus (sampled, or sent before the router saw the channel) the bus keeps order.
                continue
            self._first(row.app_id, row.channel, row.epoch, row.offset)
            if self.hub.has_subscribers(row.app_id, row.channel):
                n = self.hub.deliver(row.app_id, row.channel, row.offset, row.message.decode())
                self.local += 1
                if n > 0:
                    ts = MESSAGE_HEAD_DECODER.decode(row.message).ts
                    self.metrics.message_out(row.app_id, n, time.time() - self._accepted_at(ts))

    def _first(self, app_id: str, channel: str, epoch: str, offset: int) -> bool:
        """Whether `offset` is new for its channel (then remembered); False for a redelivery."""
        key = (app_id, channel, epoch)
        last = self._seen.get(key)
        if last is not None and offset <= last:
            self.duplicates += 1
            return False
        self._seen[key] = offset
        self._seen.move_to_end(key)
        if len(self._seen) > SEEN_CHANNELS:
            self._seen.popitem(last=False)
        return True

    def _accepted_at(self, ts: str) -> float:
        """Unix time of an RFC 3339 `ts`; a batch's messages share one, so the last parse is kept."""
        if ts != self._ts[0]:
            try:
                self._ts = (ts, dt.datetime.fromisoformat(ts).timestamp())
            except ValueError:
                self._ts = (ts, time.time())
        return self._ts[1]
