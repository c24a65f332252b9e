"""The registry's counters, gauges, histograms and their Prometheus text."""

from __future__ import annotations

import math

from pushwire.metrics import Histogram, Metrics
from tests.metrics.exposition import parse, value


def test_counters_by_label_and_exposition_parses() -> None:
    m = Metrics()
    m.message_in("101", 3)
    m.message_in("101")
    m.message_in("202")
    m.message_out("101", 0)  # nothing delivered: nothing counted
    m.message_out("101", 2, latency_s=0.004)
    m.error("bad_signature")
    m.error("bad_signature")
    series, types = parse(m.exposition())
    assert value(series, "pushwire_messages_in_total", app="101") == 4
    assert value(series, "pushwire_messages_in_total", app="202") == 1
    assert value(series, "pushwire_messages_out_total", app="101") == 2
    assert value(series, "pushwire_errors_total", code="bad_signature") == 2
    assert types["pushwire_messages_in_total"] == "counter"
    assert types["pushwire_delivery_latency_seconds"] == "histogram"
    assert value(series, "pushwire_delivery_latency_seconds_count") == 2
    assert value(series, "pushwire_delivery_latency_seconds_bucket", le="0.005") == 2
    assert value(series, "pushwire_delivery_latency_seconds_bucket", le="0.0025") == 0


def test_label_values_are_escaped() -> None:
    m = Metrics()
    m.error('we"ird\\code\nx')
    text = m.exposition()
    assert 'code="we\\"ird\\\\code\\nx"' in text
    series, _ = parse(text)
    assert value(series, "pushwire_errors_total", code='we"ird\\code\nx') == 1


def test_histogram_buckets_are_cumulative_and_quantile_is_a_bucket_bound() -> None:
    h = Histogram("lat_seconds", "latency", buckets=(0.01, 0.1, 1.0))
    assert h.quantile(0.5) is None
    for v in (0.005, 0.01, 0.05, 0.05, 0.5, 3.0):
        h.observe(v)
    series, _ = parse("\n".join(h.samples()) + "\n")
    assert [value(series, "lat_seconds_bucket", le=b) for b in ("0.01", "0.1", "1", "+Inf")] == [2, 4, 5, 6]
    assert value(series, "lat_seconds_count") == 6
    assert math.isclose(value(series, "lat_seconds_sum") or 0, 3.615)
    assert h.quantile(0.3) == 0.01
    assert h.quantile(0.5) == 0.1
    assert h.quantile(0.8) == 1.0
    assert h.quantile(0.99) == math.inf
    h.observe(0.2, n=10)  # a batch of deliveries observed at once
    assert h.count == 16 and h.quantile(0.5) == 1.0


def test_gauges_read_at_scrape_replace_by_name_and_survive_a_broken_source() -> None:
    m = Metrics()
    level = {"a": 1.0}
    m.gauge("g_level", "a level", ["k"], lambda: (((k,), v) for k, v in level.items()))
    m.gauge("g_level", "a level", ["k"], lambda: (((k,), v) for k, v in level.items()))  # replaces

    def broken() -> list[tuple[tuple[str, ...], float]]:
        raise RuntimeError("source down")

    m.gauge("g_broken", "always fails", [], broken)
    series, types = parse(m.exposition())  # no duplicate family, broken gauge empty
    assert value(series, "g_level", k="a") == 1 and types["g_level"] == "gauge" and types["g_broken"] == "gauge"
    level["a"], level["b"] = 7.5, 2
    series, _ = parse(m.exposition())
    assert value(series, "g_level", k="a") == 7.5 and value(series, "g_level", k="b") == 2


async def test_collect_awaits_refreshers_and_survives_their_failure() -> None:
    m = Metrics()
    state = {"n": 0}

    async def refresh() -> None:
        state["n"] += 1

    async def failing() -> None:
        raise RuntimeError("db down")

    m.before_scrape("count", refresh)
    m.before_scrape("failing", failing)
    m.gauge("g_n", "refreshed value", [], lambda: [((), state["n"])])
    series, _ = parse(await m.collect())
    assert value(series, "g_n") == 1
    series, _ = parse(await m.collect())
    assert value(series, "g_n") == 2
