"""Read sync across instances: an ack on one instance reaches the user's connections on every other.

The acked offset is durable in the database (AckStore); this is only the live `read` notice. It
rides the tenant's topic, keyed by the channel like its messages, marked by a first header
`kind: read` so routers tell it from messages with one comparison. Best effort by design: a
bounded queue that drops when full (the next ack, or a reconnect's welcome, catches the device up).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import msgspec

from pushwire.bus.base import Bus, BusRecord, OutgoingRecord
from pushwire.errors import BackendUnavailable
from pushwire.messaging.relay import topic_for
from pushwire.realtime import protocol as p
from pushwire.realtime.hub import Hub
from pushwire.tasks import cancel_and_wait

log = logging.getLogger(__name__)

KIND = ("kind", b"read")
MAX_PENDING = 10_000
BATCH = 500


class ReadNotice(msgspec.Struct, frozen=True, array_like=True):
    app_id: str
    user_id: str
    channel: str
    offset: int
    instance: str  # the instance that told its own connections already


_DECODER = msgspec.msgpack.Decoder(ReadNotice)
_ENCODER = msgspec.msgpack.Encoder()


def is_read_notice(headers: Sequence[tuple[str, bytes]]) -> bool:
    return bool(headers) and headers[0] == KIND


class ReadSync:
    def __init__(self, bus: Bus, hub: Hub, topic_prefix: str, instance_id: str) -> None:
        self.bus = bus
        self.hub = hub
        self.prefix = topic_prefix
        self.instance_id = instance_id
        self._queue: asyncio.Queue[OutgoingRecord] = asyncio.Queue(MAX_PENDING)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def notify(self, tenant_id: str, app_id: str, user_id: str, channel: str, offset: int) -> None:
        """Queue the notice for the other instances (this one's connections are told by the caller)."""
        notice = ReadNotice(app_id, user_id, channel, offset, self.instance_id)
        record = OutgoingRecord(
            topic=topic_for(self.prefix, tenant_id),
            key=channel.encode(),
            value=_ENCODER.encode(notice),
            headers=(KIND,),
        )
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1

    def deliver(self, record: BusRecord) -> None:
        """Called by the router for a read notice from the bus."""
        try:
            notice = _DECODER.decode(record.value)
        except msgspec.DecodeError:
            log.error("undecodable read notice at %s/%d@%d dropped", record.topic, record.partition, record.offset)
            return
        if notice.instance == self.instance_id:
            return
        frame = p.encode(p.Read(channel=notice.channel, offset=notice.offset))
        for session in self.hub.user_sessions(notice.app_id, notice.user_id):
            session.enqueue(frame)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="read-sync")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self.bus.publish(batch)
            except BackendUnavailable as exc:
                self.dropped += len(batch)
                log.warning("read notices not sent: %s", exc)
            except Exception:
                self.dropped += len(batch)
                log.exception("read notices not sent")
