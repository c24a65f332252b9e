"""create_app(settings): the composition root. Routes, dependencies, error handling, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from pushwire import __version__
from pushwire.api.admin import admin_config, admin_instances
from pushwire.api.push import push, push_batch
from pushwire.api.push_docs import document_push_routes
from pushwire.api.reads import history, presence_bulk, presence_one
from pushwire.console import console_router
from pushwire.metrics.probes import Probes
from pushwire.metrics.sampler import Sampler
from pushwire.pusher.http_api import ROUTES as PUSHER_HTTP_ROUTES
from pushwire.pusher.websocket import pusher_endpoint, pusher_http
from pushwire.realtime.transports.longpoll import ack, longpoll
from pushwire.realtime.transports.sse import sse
from pushwire.realtime.transports.websocket import websocket_endpoint
from pushwire.runtime import Runtime
from pushwire.settings import Settings
from pushwire.web.errors import EXCEPTION_HANDLERS
from pushwire.web.health import health, ready
from pushwire.web.metrics import metrics
from pushwire.web.static import static_files_router


def create_app(settings: Settings, runtime: Runtime | None = None) -> Litestar:
    runtime = runtime or Runtime.build(settings)
    # Gauges are registered here, not at start: apps whose runtime tests start directly scrape them too.
    probes = Probes(runtime)
    probes.install(runtime.metrics)
    sampler = Sampler(probes, runtime.metrics, runtime.backends.cache, runtime.settings.instance_id)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        await sampler.start()
        try:
            yield
        finally:
            await sampler.stop()
            await runtime.stop()

    async def provide_runtime() -> Runtime:
        return runtime

    async def provide_probes() -> Probes:
        return probes

    app = Litestar(
        route_handlers=[
            health,
            ready,
            metrics,
            push,
            push_batch,
            presence_one,
            presence_bulk,
            history,
            websocket_endpoint,
            pusher_endpoint,
            pusher_http,
            *PUSHER_HTTP_ROUTES,
            longpoll,
            ack,
            sse,
            admin_instances,
            admin_config,
            console_router(),
            static_files_router(),
        ],
        # Browsers on tenants' sites call the client API (long-poll, SSE, ack) cross-origin;
        # per-app Origin allow-lists are enforced in the handlers.
        cors_config=CORSConfig(
            allow_origins=["*"],
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            max_age=600,
        ),
        dependencies={
            "runtime": Provide(provide_runtime, use_cache=True),
            "probes": Provide(provide_probes, use_cache=True),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(
            title="Pushwire API",
            version=__version__,
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        # Bodies over 1 MiB are refused before they are read whole.
        request_max_body_size=1024 * 1024,
        debug=False,
    )
    app.state.runtime = runtime
    app.state.sampler = sampler
    document_push_routes(app)
    return app
