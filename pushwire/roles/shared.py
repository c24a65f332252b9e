"""What the roles of one process share: settings, backends, tracing, metrics, secrets, live config.

It owns the backends' lifecycle: a role starts and stops only its own services, so roles built
over one Shared make a full instance, and one role built alone runs over the same Shared.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from pushwire.messaging.epochs import EpochSeed
from pushwire.metrics import Metrics
from pushwire.registry.config import LiveConfig
from pushwire.settings import Settings
from pushwire.tenants.crypto import SecretBox
from pushwire.tracing.provider import Tracing
from pushwire.wiring import Backends, build_backends, close_backends, start_backends


@dataclass
class Shared:
    settings: Settings
    backends: Backends
    # This process's TracerProvider (never the global one), span store and ack tracer.
    tracing: Tracing
    box: SecretBox
    epochs: EpochSeed
    # Global config from the registry, watched: the API reads push_enabled, realtime the heartbeat.
    config: LiveConfig
    # Counters for /metrics and the queue-depth page; hooks in the push API, router and error handlers.
    metrics: Metrics = field(default_factory=Metrics)

    @classmethod
    def build(cls, settings: Settings, backends: Backends | None = None) -> Shared:
        backends = backends or build_backends(settings)
        return cls(
            settings=settings,
            backends=backends,
            tracing=Tracing(settings, backends.cache),
            box=SecretBox(settings.secret_key),
            epochs=EpochSeed(settings.secret_key),
            config=LiveConfig(backends.registry, {"heartbeat": settings.heartbeat, "push_enabled": True}),
        )

    async def start(self) -> None:
        await start_backends(self.backends)
        await self.tracing.start()
        await self.config.start()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.config.stop()
        with contextlib.suppress(Exception):
            await self.tracing.stop()  # last spans written before the cache closes
        await close_backends(self.backends)
