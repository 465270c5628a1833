"""Prometheus metrics of the serving API, shared by REST and gRPC.

With several worker processes (`featureline serve --workers N`) the parent sets
PROMETHEUS_MULTIPROC_DIR before the workers start, so every worker writes its samples
to shared files and `/metrics` (answered by any one worker) reports all of them.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from featureline.serving_api.frame import PRESENT, FrameColumn

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


class _LocalHistogram:
    """A histogram child's observations counted in this process and added to the shared
    child in one go (`flush`). With several workers each prometheus_client value write
    goes through a mmap'd file and a getpid() check (a syscall: ~1 us in this VM);
    a request made ~10 of them (~10% of a batch-1 request's CPU)."""

    __slots__ = ("child", "bounds", "counts", "total")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.bounds = list(child._upper_bounds)  # ends with +Inf
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # prometheus_client counts a value in the first bucket with value <= bound.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        _schedule_flush()

    def flush(self) -> None:
        buckets = self.child._buckets
        for i, count in enumerate(self.counts):
            if count:
                buckets[i].inc(count)
                self.counts[i] = 0
        if self.total:
            self.child._sum.inc(self.total)
            self.total = 0.0


class _LocalCounter:
    __slots__ = ("child", "amount")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.amount = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.amount += amount
        _schedule_flush()

    def flush(self) -> None:
        if self.amount:
            self.child.inc(self.amount)
            self.amount = 0.0


# Labelled children, looked up once (prometheus_client's labels() costs ~4 us a call),
# each behind its local accumulator.
_CHILDREN: dict[tuple[str, ...], Any] = {}
FLUSH_INTERVAL_S = 1.0  # how far /metrics may lag the requests of another worker
_flush_scheduled = False


def _child(metric: Any, *labels: str) -> Any:
    key = (metric._name, *labels)
    child = _CHILDREN.get(key)
    if child is None:
        local = _LocalHistogram if isinstance(metric, Histogram) else _LocalCounter
        child = _CHILDREN[key] = local(metric.labels(*labels))
    return child


def flush() -> None:
    """Add this process's pending observations to the shared metrics."""
    global _flush_scheduled
    _flush_scheduled = False
    for child in list(_CHILDREN.values()):
        child.flush()


def _schedule_flush() -> None:
    global _flush_scheduled
    if _flush_scheduled:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no event loop (a script or a test): no batching
        flush()
        return
    _flush_scheduled = True
    loop.call_later(FLUSH_INTERVAL_S, flush)


def observe_request(endpoint: str, n_rows: int, seconds: float, code: str) -> None:
    _child(REQUEST_SECONDS, endpoint, batch_label(n_rows)).observe(seconds)
    _child(REQUESTS, endpoint, code).inc()


def observe_redis_error(kind: str) -> None:
    # Written through at once: errors are rare, and an alert should not wait a flush.
    REDIS_ERRORS.labels(kind).inc()


def observe_near_cache(hits: int, misses: int) -> None:
    if hits:
        _child(NEAR_CACHE_LOOKUPS, "hit").inc(hits)
    if misses:
        _child(NEAR_CACHE_LOOKUPS, "miss").inc(misses)


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
    flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
