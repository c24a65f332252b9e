"""SSE event framing: a frame holding raw newlines (a message stored before publish compacted
`data`) is split into one `data:` field per line, so an EventSource rebuilds the whole JSON."""

from __future__ import annotations

import json

from pushwire.realtime.polling import PollResult
from pushwire.realtime.transports.sse import _batch


def _parse(event: str) -> tuple[str | None, str]:
    """What an EventSource sees: the event id and the `data:` fields joined by newlines."""
    ident = None
    data: list[str] = []
    for line in event.rstrip("\n").split("\n"):
        if line.startswith("id: "):
            ident = line[4:]
        elif line.startswith("data: "):
            data.append(line[6:])
    return ident, "\n".join(data)


def test_a_frame_with_raw_newlines_reaches_the_client_whole() -> None:
    old = '{"type":"message","channel":"c","data":{"a": 1,\n"b": [2,\r\n3]}}'
    compact = '{"type":"message","channel":"c","data":{"a":1}}'
    events = _batch(PollResult(messages=[old, compact], cursors=["c1", "c2"], cursor="c2", welcome=None, subscribed=[]))
    assert len(events) == 2
    for event in events:
        assert event.endswith("\n\n") and "\n\n" not in event[:-2]  # one event each, not cut short
    (id1, data1), (id2, data2) = _parse(events[0]), _parse(events[1])
    assert (id1, id2) == ("c1", "c2")
    assert json.loads(data1)["data"] == {"a": 1, "b": [2, 3]}
    assert data2 == compact
