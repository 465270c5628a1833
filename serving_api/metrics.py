"""Prometheus metrics of the serving API, shared by REST and gRPC.

With several worker processes (`featureline serve --workers N`) the parent sets
PROMETHEUS_MULTIPROC_DIR before the workers start, so every worker writes its samples
to shared files and `/metrics` (answered by any one worker) reports all of them:
REDIS_ERRORS through prometheus_client's multiprocess mode, the others (counted here,
in this process) through serving_api.metrics_collector's files.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from collections.abc import Iterable
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    generate_latest,
)

from featureline.serving_api.frame import PRESENT, FrameColumn
from featureline.serving_api.metrics_collector import (
    ConstantGauges,
    FamilySpec,
    Snapshot,
    SnapshotCollector,
    read_snapshots,
    write_snapshot,
)
from featureline.slo import FreshnessSlo

# Latency buckets around the goals (batch 1 p99 <= 3 ms, batch 100 p50 <= 5 ms,
# batch 1000 tensor p50 <= 15 ms), then coarse ones up to the 1 s Redis budget.
_LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
)  # fmt: skip
# Staleness: from a fresh stream (seconds) to daily batch views (days).
_STALENESS_BUCKETS: Final = (
    1.0,
    5.0,
    15.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    6 * 3600.0,
    86400.0,
    3 * 86400.0,
    7 * 86400.0,
)
# Staleness is sampled from at most this many rows per view and request, so that a
# 1,000-row batch costs no more than a 10-row one.
_STALENESS_SAMPLES: Final = 10

REQUEST_SECONDS: Final = FamilySpec(
    "featureline_serving_request_seconds",
    "Time to answer a request, by endpoint and batch size (entities per request).",
    ("endpoint", "batch"),
    _LATENCY_BUCKETS,
    "histogram",
)
REQUESTS: Final = FamilySpec(
    "featureline_serving_requests",
    "Requests answered, by endpoint and status code (HTTP status or gRPC code name).",
    ("endpoint", "code"),
)
REDIS_ERRORS: Final = Counter(
    "featureline_serving_redis_errors",
    "Redis failures seen while serving, by kind (unavailable, timeout, reply).",
    ["kind"],
)
for _kind in ("unavailable", "timeout", "reply"):
    REDIS_ERRORS.labels(_kind)  # exported as 0 before the first error, not absent
NEAR_CACHE_LOOKUPS: Final = FamilySpec(
    "featureline_serving_near_cache_lookups",
    "Redis commands answered from the near cache (hit) or sent to Redis (miss); "
    "stays 0 unless serve runs with --near-cache-keys.",
    ("result",),
)
STALENESS_SECONDS: Final = FamilySpec(
    "featureline_serving_staleness_seconds",
    "Age of served latest values (serving time - event time), by view.",
    ("view",),
    _STALENESS_BUCKETS,
    "histogram",
)
# --- feature logging (serving_api.feature_log) ---
FEATURE_LOG_ROWS: Final = FamilySpec(
    "featureline_serving_feature_log_rows",
    "Served rows written to a feature service's log (its Feast logging_config), by service.",
    ("service",),
)
FEATURE_LOG_DROPPED: Final = FamilySpec(
    "featureline_serving_feature_log_dropped",
    "Sampled rows not logged, by service: the log's queue was full, or a write failed.",
    ("service",),
)
SPECS: Final = [REQUEST_SECONDS, REQUESTS, NEAR_CACHE_LOOKUPS, STALENESS_SECONDS]
SPECS.extend([FEATURE_LOG_ROWS, FEATURE_LOG_DROPPED])
# Each view's freshness SLO (featureline.slo: the view's `freshness_slo` tag), set once at
# start; the alert rules compare STALENESS_SECONDS against it per view.
_FRESHNESS_SLOS: Final[dict[tuple[str, ...], float]] = {}
FRESHNESS_SLO: Final = ConstantGauges(
    "featureline_view_freshness_slo_seconds",
    "Expected freshness of a view (its freshness_slo tag), in seconds; topic: a stream "
    "view's Kafka topic ('' for a batch view).",
    ("view", "topic"),
    lambda: dict(_FRESHNESS_SLOS),
)


def set_freshness_slos(slos: Iterable[FreshnessSlo]) -> None:
    _FRESHNESS_SLOS.clear()
    _FRESHNESS_SLOS.update({(s.view, s.topic): s.seconds for s in slos})


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
    """A histogram child's observations, counted in this process. With several workers
    each prometheus_client value write goes through a mmap'd file and a getpid() check
    (a syscall: ~1 us in this VM); a request made ~10 of them (~10% of a batch-1
    request's CPU). These counts reach /metrics through metrics_collector."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, spec: FamilySpec) -> None:
        self.bounds = spec.bounds()  # ends with +Inf
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # prometheus_client counts a value in the first bucket with value <= bound.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        _schedule_flush()


class _LocalCounter:
    __slots__ = ("total",)

    def __init__(self, spec: FamilySpec) -> None:
        self.total = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.total += amount
        _schedule_flush()


class Family:
    """One metric's labelled children in this process (cumulative since start)."""

    def __init__(self, spec: FamilySpec) -> None:
        self.spec = spec
        self.histograms: dict[tuple[str, ...], _LocalHistogram] = {}
        self.counters: dict[tuple[str, ...], _LocalCounter] = {}

    def histogram(self, labels: tuple[str, ...]) -> _LocalHistogram:
        child = self.histograms.get(labels)
        if child is None:
            child = self.histograms[labels] = _LocalHistogram(self.spec)
        return child

    def counter(self, labels: tuple[str, ...]) -> _LocalCounter:
        child = self.counters.get(labels)
        if child is None:
            child = self.counters[labels] = _LocalCounter(self.spec)
        return child


def snapshot(families: Iterable[Family]) -> Snapshot:
    out: Snapshot = {}
    for family in families:
        rows = [(k, list(h.counts), h.total) for k, h in family.histograms.items()]
        rows += [(k, [], c.total) for k, c in family.counters.items()]
        if rows:
            out[family.spec.name] = rows
    return out


# Labelled children by metric name, looked up by a dict get per observation.
FAMILIES: Final[dict[str, Family]] = {spec.name: Family(spec) for spec in SPECS}
for _result in ("hit", "miss"):
    FAMILIES[NEAR_CACHE_LOOKUPS.name].counter((_result,))  # 0 until counted, not absent
# The hot families, and each view's staleness child, by reference: no name lookups.
_REQUEST_SECONDS: Final = FAMILIES[REQUEST_SECONDS.name]
_REQUESTS: Final = FAMILIES[REQUESTS.name]
_STALENESS_SECONDS: Final = FAMILIES[STALENESS_SECONDS.name]
_STALENESS: Final[dict[str, _LocalHistogram]] = {}
FLUSH_INTERVAL_S: Final = 1.0  # how far /metrics may lag the requests of another worker
_flush_scheduled = False


def _local() -> list[Snapshot]:
    return [snapshot(FAMILIES.values())]


# One process: the default registry reads the counts directly (no files, no flush).
REGISTRY.register(SnapshotCollector(SPECS, _local))
REGISTRY.register(FRESHNESS_SLO)


def flush() -> None:
    """Write this process's counts for the worker that answers /metrics (multiprocess)."""
    global _flush_scheduled
    _flush_scheduled = False
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        write_snapshot(directory, snapshot(FAMILIES.values()))


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
    _REQUEST_SECONDS.histogram((endpoint, batch_label(n_rows))).observe(seconds)
    _REQUESTS.counter((endpoint, code)).inc()


def observe_redis_error(kind: str) -> None:
    # Written through at once: errors are rare, and an alert should not wait a flush.
    REDIS_ERRORS.labels(kind).inc()


def observe_near_cache(hits: int, misses: int) -> None:
    family = FAMILIES[NEAR_CACHE_LOOKUPS.name]
    if hits:
        family.counter(("hit",)).inc(hits)
    if misses:
        family.counter(("miss",)).inc(misses)


def observe_staleness(columns: list[FrameColumn], t_us: int) -> None:
    seen: set[int] = set()  # a view's columns share one event-time list
    for col in columns:
        if not col.view or col.raw is None or id(col.event_us) in seen:
            continue
        seen.add(id(col.event_us))
        n = len(col.event_us)
        step = max(1, n // _STALENESS_SAMPLES)
        histogram = _STALENESS.get(col.view)
        if histogram is None:
            histogram = _STALENESS[col.view] = _STALENESS_SECONDS.histogram((col.view,))
        for i in range(0, n, step):
            if col.statuses[i] == PRESENT:
                histogram.observe(max(0, t_us - col.event_us[i]) / 1e6)


def observe_feature_log(service: str, rows: int, dropped: int) -> None:
    """Called in the event loop's thread only (the writer thread hands its counts over)."""
    written = FAMILIES[FEATURE_LOG_ROWS.name].counter((service,))  # created: exported as 0
    lost = FAMILIES[FEATURE_LOG_DROPPED.name].counter((service,))
    if rows:
        written.inc(rows)
    if dropped:
        lost.inc(dropped)


def render() -> tuple[bytes, str]:
    """The exposition text of every worker (multiprocess) or of this process."""
    flush()
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if directory:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(SnapshotCollector(SPECS, lambda: read_snapshots(directory)))
        registry.register(FRESHNESS_SLO)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
