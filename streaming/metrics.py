"""Stream metrics: Prometheus series, plus in-process totals for the progress line and
the `--stats-file` summary the benchmark reads.

Series (registry `REGISTRY`, served by `serve(port)`):
  featureline_stream_events_total{topic}          events applied online
  featureline_stream_dead_letters_total{topic}    messages sent to <topic>.dlq
  featureline_stream_late_events_total{view}      events too old for the online tiles
  featureline_stream_consumer_lag{topic,partition} end offset - next offset to read
  featureline_stream_freshness_seconds{topic}     Kafka record time -> visible in Redis
  featureline_stream_expectation_violations_total{view,field,rule,action}
                                                  events breaking a data-quality expectation
  featureline_stream_online_retries_total         failed tries of online writes (a Redis
                                                  failover or outage), each batch retried
Events/s is rate(featureline_stream_events_total[1m]).
Freshness is observed for up to 64 events per batch: observing all of them would cost
~1 us each (5 % of a core at 50k events/s); the stats file keeps every value.
"""

from __future__ import annotations

import json
import resource
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()
EVENTS = Counter("featureline_stream_events", "events applied online", ["topic"], registry=REGISTRY)
DEAD = Counter("featureline_stream_dead_letters", "messages sent to the DLQ", ["topic"], registry=REGISTRY)
LATE = Counter(
    "featureline_stream_late_events",
    "events older than the online tiles' retention (stored offline only)",
    ["view"],
    registry=REGISTRY,
)
LAG = Gauge(
    "featureline_stream_consumer_lag",
    "end offset minus next offset to read",
    ["topic", "partition"],
    registry=REGISTRY,
)
FRESHNESS = Histogram(
    "featureline_stream_freshness_seconds",
    "Kafka record timestamp to visible in Redis",
    # By topic: the freshness alert compares it with the SLO of the topic's views
    # (featureline_view_freshness_slo_seconds{view,topic}, exported by serve).
    ["topic"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
VIOLATIONS = Counter(
    "featureline_stream_expectation_violations",
    "events breaking a data-quality expectation (featureline.expectations), by view, "
    "field, rule and action (count: applied anyway; dead_letter: sent to the DLQ)",
    ["view", "field", "rule", "action"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "featureline_stream_online_retries",
    "failed tries of a batch's online write (retried until it succeeds)",
    registry=REGISTRY,
)
_SAMPLES_PER_BATCH = 64
# Freshness values kept for the summary: ~8 MB, 1M events.
_MAX_KEPT = 1_000_000


def _process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve(port: int) -> None:
    start_http_server(port, registry=REGISTRY)


@dataclass
class Totals:
    """What the job did, for the progress line and the stats file."""

    events: int = 0
    skipped: int = 0
    dead: int = 0
    late: int = 0
    late_by_view: dict[str, int] = field(default_factory=dict)
    online_retries: int = 0  # failed tries of batches' online writes (each retried)
    violations: dict[tuple[str, ...], int] = field(default_factory=dict)
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    first_apply: float = 0.0
    last_apply: float = 0.0
    # This process's CPU seconds between its first and last applied batch (start-up
    # excluded): CPU per event, a figure that does not depend on the machine's load.
    apply_cpu_s: float = 0.0
    _cpu_at_first: float = 0.0
    _fresh: list[np.ndarray] = field(default_factory=list)
    _kept: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(
        self,
        topic: str,
        applied: int,
        skipped: int,
        created_ms: np.ndarray,
        visible_ms: int,
        late: dict[str, int],
    ) -> None:
        with self._lock:
            now = time.time()
            if not self.first_apply:
                self.first_apply, self._cpu_at_first = now, _process_cpu_s()
            else:
                self.apply_cpu_s = _process_cpu_s() - self._cpu_at_first
            self.last_apply = now
            self.events += applied
            self.skipped += skipped
            EVENTS.labels(topic).inc(applied)
            for view, n in late.items():
                self.late += n
                self.late_by_view[view] = self.late_by_view.get(view, 0) + n
                LATE.labels(view).inc(n)
            if created_ms.size:
                fresh = (visible_ms - created_ms) / 1000.0
                if self._kept < _MAX_KEPT:
                    self._fresh.append(fresh)
                    self._kept += fresh.size
                step = max(1, fresh.size // _SAMPLES_PER_BATCH)
                histogram = FRESHNESS.labels(topic)
                for value in fresh[::step].tolist():
                    histogram.observe(max(value, 0.0))

    def dead_letters(self, topic: str, n: int) -> None:
        if n:
            with self._lock:
                self.dead += n
            DEAD.labels(topic).inc(n)

    def expectations(self, counts: dict[tuple[str, ...], int]) -> None:
        with self._lock:
            for key, n in counts.items():
                self.violations[key] = self.violations.get(key, 0) + n
        for (view, field_name, rule, action), n in counts.items():
            VIOLATIONS.labels(view, field_name, rule, action).inc(n)

    def retried(self, failures: int) -> None:
        with self._lock:
            self.online_retries += failures
        RETRIES.inc(failures)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        lag = max(lag, 0)  # Tansu's high watermark can trail the last batch
        self.lag[(topic, partition)] = lag
        LAG.labels(topic, str(partition)).set(lag)

    def freshness_quantiles(self) -> dict[str, float]:
        with self._lock:
            if not self._fresh:
                return {}
            values = np.concatenate(self._fresh)
        p50, p99, pmax = np.percentile(values, [50, 99, 100]).tolist()
        return {"p50_s": p50, "p99_s": p99, "max_s": pmax}

    def summary(self) -> dict[str, Any]:
        span = max(self.last_apply - self.first_apply, 1e-9)
        return {
            "events": self.events,
            "skipped": self.skipped,
            "dead_letters": self.dead,
            "late_events": self.late,
            "late_events_by_view": dict(self.late_by_view),
            "online_retries": self.online_retries,
            "lag": sum(self.lag.values()),
            "elapsed_s": time.time() - self.started,
            "first_apply": self.first_apply,
            "apply_cpu_s": self.apply_cpu_s,
            "last_apply": self.last_apply,
            "apply_span_s": span if self.events else 0.0,
            "events_per_s": self.events / span if self.events else 0.0,
            "freshness": self.freshness_quantiles(),
            # "view/field/rule/action" -> events (featureline.expectations)
            "expectation_violations": {"/".join(k): n for k, n in sorted(self.violations.items())},
        }

    def write(self, path: Path) -> None:
        """The summary as JSON at `path`, every freshness value beside it (.npy)."""
        with self._lock:
            fresh = np.concatenate(self._fresh) if self._fresh else np.empty(0)
        np.save(_values_path(path), fresh)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.summary(), indent=2))
        tmp.replace(path)


def _values_path(path: Path) -> Path:
    return path.with_name(path.name + ".freshness.npy")


def merge_summaries(paths: list[Path], out: Path) -> dict[str, Any]:
    """One summary of several worker processes' stats files (written to `out`)."""
    parts = [json.loads(p.read_text()) for p in paths if p.exists()]
    totals = Totals()
    for part in parts:
        totals.events += part["events"]
        totals.skipped += part["skipped"]
        totals.dead += part["dead_letters"]
        totals.late += part["late_events"]
        totals.online_retries += part.get("online_retries", 0)
        for key, n in part.get("expectation_violations", {}).items():
            parts_key = tuple(key.split("/"))
            totals.violations[parts_key] = totals.violations.get(parts_key, 0) + n
        for view, n in part["late_events_by_view"].items():
            totals.late_by_view[view] = totals.late_by_view.get(view, 0) + n
        if part["events"]:
            first = totals.first_apply or part["first_apply"]
            totals.first_apply = min(first, part["first_apply"])
            totals.last_apply = max(totals.last_apply, part["last_apply"])
            totals.apply_cpu_s += part.get("apply_cpu_s", 0.0)
        totals.started = min(totals.started, time.time() - part["elapsed_s"])
    for p in paths:
        if _values_path(p).exists():
            totals._fresh.append(np.load(_values_path(p)))
    totals.write(out)
    return totals.summary()


TOTALS = Totals()
