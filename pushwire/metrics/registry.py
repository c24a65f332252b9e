"""Counters, gauges and histograms with labels, and their Prometheus text exposition.

Hand-rolled rather than prometheus_client: that library keeps a process-global registry, and
create_app(settings) may build several apps in one process (tests, benchmarks). Each Runtime owns
one Metrics; the hot paths call plain methods that only add to dicts (no locks: one event loop).
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence

log = logging.getLogger(__name__)

Labels = tuple[str, ...]

# Delivery latency buckets (seconds): push accepted → frame queued to a socket.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Pushes per group-commit transaction: 1 when idle, up to the group's batch cap (100) under load.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 100)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Labels, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return repr(int(value)) if float(value).is_integer() else repr(value)


class Counter:
    kind = "counter"

    def __init__(self, name: str, help_: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help_, tuple(labels)
        self.values: dict[Labels, float] = {}

    def inc(self, *labels: str, n: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + n

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0)

    def total(self) -> float:
        return sum(self.values.values())

    def samples(self) -> Iterable[str]:
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {_num(value)}"


class Gauge:
    """A value read when scraped (connections, outbox backlog, consumer lag)."""

    kind = "gauge"

    def __init__(
        self, name: str, help_: str, labels: Sequence[str], read: Callable[[], Iterable[tuple[Labels, float]]]
    ) -> None:
        self.name, self.help, self.label_names, self.read = name, help_, tuple(labels), read
        self.values: dict[Labels, float] = {}

    def refresh(self) -> None:
        try:
            self.values = dict(self.read())
        except Exception:
            log.exception("gauge %s could not be read", self.name)
            self.values = {}

    def samples(self) -> Iterable[str]:
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {_num(value)}"


class Histogram:
    kind = "histogram"

    def __init__(self, name: str, help_: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.name, self.help = name, help_
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # the last is +Inf only
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, n: int = 1) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += n
        self.sum += value * n
        self.count += n

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding quantile q (None when empty)."""
        if not self.count:
            return None
        rank, seen = q * self.count, 0
        for bound, c in zip((*self.bounds, math.inf), self.counts, strict=True):
            seen += c
            if seen >= rank:
                return bound
        return math.inf

    def samples(self) -> Iterable[str]:
        cumulative = 0
        for bound, c in zip((*self.bounds, math.inf), self.counts, strict=True):
            cumulative += c
            yield f'{self.name}_bucket{{le="{_num(bound)}"}} {cumulative}'
        yield f"{self.name}_sum {_num(self.sum)}"
        yield f"{self.name}_count {self.count}"


class Metrics:
    """What one instance counts. Hooks are called from the push API, the router and error handlers."""

    def __init__(self) -> None:
        self.messages_in = Counter("pushwire_messages_in_total", "Messages accepted by the push API.", ["app"])
        self.messages_out = Counter(
            "pushwire_messages_out_total", "Message frames queued to client connections on this instance.", ["app"]
        )
        self.errors = Counter("pushwire_errors_total", "Error responses and socket closes, by code.", ["code"])
        self.delivery_latency = Histogram(
            "pushwire_delivery_latency_seconds", "Push accepted → frame queued to a local connection."
        )
        self.push_transactions = Histogram(
            "pushwire_push_transaction_pushes",
            "Single pushes per publish transaction (group commit); _count is transactions, _sum pushes.",
            BATCH_BUCKETS,
        )
        self.gauges: list[Gauge] = []
        # Awaited before each scrape: async sources (a database count) refresh what gauges read.
        self.refreshers: dict[str, Callable[[], Awaitable[object]]] = {}

    # Hooks (cheap: called on hot paths).
    def message_in(self, app_id: str, n: int = 1) -> None:
        self.messages_in.inc(app_id, n=n)

    def message_out(self, app_id: str, n: int, latency_s: float | None = None) -> None:
        if n <= 0:
            return
        self.messages_out.inc(app_id, n=n)
        if latency_s is not None:
            self.delivery_latency.observe(max(0.0, latency_s), n)

    def push_transaction(self, pushes: int) -> None:
        self.push_transactions.observe(pushes)

    def error(self, code: str) -> None:
        self.errors.inc(code)

    def gauge(
        self, name: str, help_: str, labels: Sequence[str], read: Callable[[], Iterable[tuple[Labels, float]]]
    ) -> None:
        # Same name replaces: a runtime handed to create_app twice must not expose a family twice.
        self.gauges = [g for g in self.gauges if g.name != name]
        self.gauges.append(Gauge(name, help_, labels, read))

    def before_scrape(self, name: str, refresh: Callable[[], Awaitable[object]]) -> None:
        self.refreshers[name] = refresh

    async def collect(self) -> str:
        """Refresh the async sources, then the exposition text."""
        for refresh in list(self.refreshers.values()):
            try:
                await refresh()
            except Exception:
                log.exception("metrics refresh failed")
        return self.exposition()

    def exposition(self) -> str:
        """Prometheus text format 0.0.4."""
        lines: list[str] = []
        metrics: list[Counter | Gauge | Histogram] = [
            self.messages_in,
            self.messages_out,
            self.errors,
            self.delivery_latency,
            self.push_transactions,
            *self.gauges,
        ]
        for metric in metrics:
            if isinstance(metric, Gauge):
                metric.refresh()
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"
