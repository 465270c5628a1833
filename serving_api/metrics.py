"""Prometheus metrics of the serving API, shared by REST and gRPC.

With several worker processes (`featureline serve --workers N`) the parent sets
PROMETHEUS_MULTIPROC_DIR before the workers start, so every worker writes its samples
to shared files and `/metrics` (answered by any one worker) reports all of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from serving_api.frame import PRESENT, FrameColumn

# Latency buckets around the goals (batch 1 p99 <= 3 ms, batch 100 p50 <= 5 ms,
# batch 1000 tensor p50 <= 15 ms), then coarse ones up to the 1 s Redis budget.
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
)  # fmt: skip
# Staleness: from a fresh stream (seconds) to daily batch views (days).
_STALENESS_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400)
# Staleness is sampled from at most this many rows per view and request, so that a
# 1,000-row batch costs no more than a 10-row one.
_STALENESS_SAMPLES = 10

REQUEST_SECONDS = Histogram(
    "featureline_serving_request_seconds",
    "Time to answer a request, by endpoint and batch size (entities per request).",
    ["endpoint", "batch"],
    buckets=_LATENCY_BUCKETS,
)
REQUESTS = Counter(
    "featureline_serving_requests",
    "Requests answered, by endpoint and status code (HTTP status or gRPC code name).",
    ["endpoint", "code"],
)
REDIS_ERRORS = Counter(
    "featureline_serving_redis_errors",
    "Redis failures seen while serving, by kind (unavailable, timeout, reply).",
    ["kind"],
)
for _kind in ("unavailable", "timeout", "reply"):
    REDIS_ERRORS.labels(_kind)  # exported as 0 before the first error, not absent
NEAR_CACHE_LOOKUPS = Counter(
    "featureline_serving_near_cache_lookups",
    "Redis commands answered from the near cache (hit) or sent to Redis (miss); "
    "stays 0 unless serve runs with --near-cache-keys.",
    ["result"],
)
_NEAR_HIT = NEAR_CACHE_LOOKUPS.labels("hit")
_NEAR_MISS = NEAR_CACHE_LOOKUPS.labels("miss")
STALENESS_SECONDS = Histogram(
    "featureline_serving_staleness_seconds",
    "Age of served latest values (serving time - event time), by view.",
    ["view"],
    buckets=_STALENESS_BUCKETS,
)


def batch_label(n_rows: int) -> str:
    """A bounded label for the batch size (a label per size would explode)."""
    if n_rows <= 1:
        return "1"
    if n_rows <= 10:
        return "2-10"
    if n_rows <= 100:
        return "11-100"
    if n_rows <= 1000:
        return "101-1000"
    return "1001+"


# Labelled children, looked up once: prometheus_client's labels() costs ~4 us a call,
# a quarter of the whole read for one entity.
_CHILDREN: dict[tuple[str, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    key = (metric._name, *labels)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*labels)
    return child


def observe_request(endpoint: str, n_rows: int, seconds: float, code: str) -> None:
    _child(REQUEST_SECONDS, endpoint, batch_label(n_rows)).observe(seconds)
    _child(REQUESTS, endpoint, code).inc()


def observe_redis_error(kind: str) -> None:
    _child(REDIS_ERRORS, kind).inc()


def observe_near_cache(hits: int, misses: int) -> None:
    if hits:
        _NEAR_HIT.inc(hits)
    if misses:
        _NEAR_MISS.inc(misses)


def observe_staleness(columns: Iterable[FrameColumn], t_us: int) -> None:
    seen: set[int] = set()
    for col in columns:
        if not col.view or col.raw is None or id(col.event_us) in seen:
            continue
        seen.add(id(col.event_us))
        n = len(col.event_us)
        step = max(1, n // _STALENESS_SAMPLES)
        histogram = _child(STALENESS_SECONDS, col.view)
        for i in range(0, n, step):
            if col.statuses[i] == PRESENT:
                histogram.observe(max(0, t_us - col.event_us[i]) / 1e6)


def render() -> tuple[bytes, str]:
    """The exposition text of every worker (multiprocess) or of this process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
