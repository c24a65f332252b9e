"""One TracerProvider per Runtime (never the process-global one): sampler, processors, exporter."""

from __future__ import annotations

import asyncio
import contextlib

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Tracer

from pushwire import __version__
from pushwire.cache.base import Cache
from pushwire.settings import Settings
from pushwire.tracing.acks import AckTracer
from pushwire.tracing.commit import CommitTracer
from pushwire.tracing.context import forced_context as forced_context  # re-exported: console, tests
from pushwire.tracing.processor import StoreSpanProcessor
from pushwire.tracing.sampling import MessageSampler, draw
from pushwire.tracing.store import SpanStore


def otlp_traces_url(endpoint: str) -> str:
    """PUSHWIRE_OTLP_ENDPOINT may be the collector's base URL or its full /v1/traces URL."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


class Tracing:
    """The instance's tracer, span store and ack tracer; started and stopped with the Runtime."""

    def __init__(self, settings: Settings, cache: Cache, store: SpanStore | None = None) -> None:
        self.instance_id = settings.instance_id
        self.ratio = settings.trace_sample_ratio
        self.store = store or SpanStore(cache)
        self.provider = TracerProvider(
            sampler=MessageSampler(),
            resource=Resource.create(
                {"service.name": "pushwire", "service.version": __version__, "service.instance.id": self.instance_id}
            ),
            shutdown_on_exit=False,  # Runtime.stop shuts it down; tests build many providers
        )
        self.provider.add_span_processor(StoreSpanProcessor(self.store, self.instance_id))
        self.otlp_url = otlp_traces_url(settings.otlp_endpoint) if settings.otlp_endpoint else ""
        if self.otlp_url:
            self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=self.otlp_url)))
        self.tracer: Tracer = self.provider.get_tracer("pushwire", __version__)
        self.acks = AckTracer(self.tracer, self.store, self.instance_id, shared_lookup=self.ratio > 0)
        # The Publisher's observer: db.commit spans and the span store's message index.
        self.commits = CommitTracer(self.tracer, self.store, self.ratio)

    def sampled(self) -> bool:
        """Whether a new push is traced: decided before any span exists (see sampling.py)."""
        return draw(self.ratio)

    async def start(self) -> None:
        await self.store.start()

    async def stop(self) -> None:
        await self.store.stop()
        # Joins the OTLP exporter's thread after a last export: off the event loop, and bounded
        # (an unreachable collector must not hold up the instance's shutdown).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await asyncio.to_thread(self.provider.shutdown)
