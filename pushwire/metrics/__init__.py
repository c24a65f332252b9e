"""Process-local counters and histograms, exposed in Prometheus' text format at /metrics."""

from pushwire.metrics.registry import Counter, Gauge, Histogram, Metrics

__all__ = ["Counter", "Gauge", "Histogram", "Metrics"]
