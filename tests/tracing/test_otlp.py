"""PUSHWIRE_OTLP_ENDPOINT: spans are also exported as OTLP/HTTP protobuf to <endpoint>/v1/traces."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pushwire.storage.migrate import upgrade
from pushwire.tracing.provider import otlp_traces_url
from tests.live import live_server


class Collector(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.received: list[tuple[str, str, bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received.append((self.path, self.headers.get("Content-Type", ""), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_endpoint_forms() -> None:
    assert otlp_traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert otlp_traces_url("http://c:4318/") == "http://c:4318/v1/traces"
    assert otlp_traces_url("https://c/otlp/v1/traces") == "https://c/otlp/v1/traces"


async def test_spans_are_exported_to_the_collector(collector: Collector, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/otlp.db"
    await asyncio.to_thread(upgrade, url)
    env = {
        "PUSHWIRE_SECRET_KEY": "test-secret-key-0123456789",
        "PUSHWIRE_DATABASE_URL": url,
        "PUSHWIRE_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        "PUSHWIRE_TRACE_SAMPLE_RATIO": "1",
    }
    async with live_server(env) as live, live.pusher() as pw:
        accepted = await pw.push(channels=["room.otlp"], event="e", data=1)
        await asyncio.sleep(0.5)  # the relay publishes; the server's shutdown flushes the exporter
    assert collector.received, "no OTLP request arrived"
    names, message_ids = set(), set()
    for path, content_type, body in collector.received:
        assert path == "/v1/traces" and content_type == "application/x-protobuf"
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            assert (
                attrs["service.name"] == "pushwire"
                and attrs["service.instance.id"] == live.runtime.settings.instance_id
            )
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    names.add(span.name)
                    message_ids |= {a.value.string_value for a in span.attributes if a.key == "message_id"}
    assert {"push", "db.commit", "outbox.relay", "kafka.produce"} <= names
    assert accepted["id"] in message_ids
