"""The operations page's figures, from what the services themselves export or write:

- stream views: consumer lag, freshness p50/p99 and dead letters, by the view's Kafka
  topic, from the stream job's /metrics (featureline.streaming.metrics);
- batch views: the end of the last materialize run (the mark materialize keeps in the
  online store, featureline.batch.materialize.job.mark_key) and the newest date
  partition of the view's offline rows; backfill records no run of its own, so the
  page says "not recorded" rather than guessing one from file times;
- serving: request rate, non-OK rate and p50/p99 latency per endpoint, from serve's
  /metrics over the window between two scrapes (featureline.ui.metrics);
- consistency reports: featureline.ui.reports.
"""

from __future__ import annotations

import datetime as dt
import importlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featureline.errors import FeaturelineError
from featureline.settings import Settings
from featureline.specs import RepoSpec
from featureline.ui import metrics as m
from featureline.ui.catalog import freshness_slo_s

# Series read here (their exporters: serving_api/metrics.py, streaming/metrics.py).
REQUESTS = "featureline_serving_requests_total"
REQUEST_SECONDS = "featureline_serving_request_seconds"
STALENESS = "featureline_serving_staleness_seconds"
LAG = "featureline_stream_consumer_lag"
FRESHNESS = "featureline_stream_freshness_seconds"
DEAD = "featureline_stream_dead_letters_total"
OK_CODES = ("200", "OK")
# Where materialize's marks are named (imported when first needed: ~1 s, pyarrow's).
MARKS_MODULE = "featureline.batch.materialize.job"


@dataclass(frozen=True)
class Quantiles:
    p50: float | None
    p99: float | None
    over: str  # "last 12 s", or "since start" when no window had any observation


def quantiles(window: m.Window, name: str, by: str, group: str) -> Quantiles:
    """p50/p99 of a histogram's group: over the window when it saw observations, else
    over everything the process observed since it started."""
    if window.change is not None:
        recent = m.buckets(window.change, name, by).get(group, [])
        if recent and recent[-1][1] > 0:
            return Quantiles(
                m.quantile(0.5, recent), m.quantile(0.99, recent), f"last {window.seconds:.0f} s"
            )
    since = m.buckets(window.now, name, by).get(group, [])
    return Quantiles(m.quantile(0.5, since), m.quantile(0.99, since), "since start")


@dataclass(frozen=True)
class StreamRow:
    view: str
    topic: str
    lag: float | None
    freshness: Quantiles
    dead_letters: float | None
    dead_per_s: float | None
    slo_s: float | None

    @property
    def breach(self) -> bool | None:
        """p99 freshness over the SLO (what deploy/monitoring's alert compares)."""
        if self.slo_s is None or self.freshness.p99 is None:
            return None
        return self.freshness.p99 > self.slo_s


def stream_rows(repo: RepoSpec, window: m.Window) -> list[StreamRow]:
    lag = m.total(window.now, LAG, by="topic")
    dead = m.total(window.now, DEAD, by="topic")
    dead_rate = (
        m.per_second(m.total(window.change, DEAD, by="topic"), window.seconds) if window.change else {}
    )
    rows = []
    for name, view in sorted(repo.views.items()):
        if view.stream_source is None:
            continue
        topic = view.stream_source.topic
        rows.append(
            StreamRow(
                name,
                topic,
                lag.get(topic),
                quantiles(window, FRESHNESS, "topic", topic),
                dead.get(topic),
                dead_rate.get(topic),
                freshness_slo_s(view),
            )
        )
    return rows


@dataclass(frozen=True)
class EndpointRow:
    endpoint: str
    requests: float
    per_s: float | None
    not_ok_per_s: float | None
    latency: Quantiles


def serving_rows(window: m.Window) -> list[EndpointRow]:
    counts = m.select(window.now, REQUESTS)
    endpoints = sorted({labels.get("endpoint", "") for labels, _ in counts})
    rows = []
    for endpoint in endpoints:
        total = sum(v for labels, v in counts if labels.get("endpoint") == endpoint)
        per_s = not_ok = None
        if window.change is not None and window.seconds > 0:
            changed = m.select(window.change, REQUESTS, endpoint=endpoint)
            per_s = sum(v for _, v in changed) / window.seconds
            not_ok = sum(v for labels, v in changed if labels.get("code") not in OK_CODES) / window.seconds
        rows.append(
            EndpointRow(
                endpoint, total, per_s, not_ok, quantiles(window, REQUEST_SECONDS, "endpoint", endpoint)
            )
        )
    return rows


@dataclass(frozen=True)
class BatchRow:
    view: str
    materialized_to: str  # ISO time of the last materialize run's end; "" when none
    offline_newest: str  # "date=YYYY-MM-DD, written <time>", or "none"
    backfill: str = "not recorded"


def _iso_us(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def newest_partition(folder: Path) -> str:
    """The newest date=... partition under `folder` and when it was last written."""
    try:
        parts = sorted(p for p in folder.iterdir() if p.name.startswith("date=") and p.is_dir())
    except OSError:
        return "none"
    if not parts:
        return "none"
    newest = parts[-1]
    try:
        written = max(f.stat().st_mtime for f in newest.iterdir())
    except (OSError, ValueError):
        written = newest.stat().st_mtime
    stamp = dt.datetime.fromtimestamp(written, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{newest.name}, written {stamp}"


class MaterializeMarks:
    """Reads materialize's marks from the online store (one connection, reopened after
    a failure at most every RETRY_S)."""

    # A Redis that does not answer is tried again at most every 10 s, so that pages
    # do not each wait for the connect timeout.
    RETRY_S = 10.0
    # Connect and read timeout: the operations page's budget is 300 ms.
    TIMEOUT_S = 0.25

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Any = None
        self._failed_at = 0.0
        self._error = ""
        self._lock = threading.Lock()

    def _open(self) -> Any:
        import time

        from featureline.config import online_store
        from featureline.online_store import open_store

        if self._store is None:
            if self._error and time.monotonic() - self._failed_at < self.RETRY_S:
                raise FeaturelineError(self._error)
            try:
                cfg = online_store(self.settings)
                self._store = open_store(cfg, self.TIMEOUT_S, socket_timeout=self.TIMEOUT_S)
            except FeaturelineError as exc:
                self._failed_at, self._error = time.monotonic(), f"online store: {exc}"
                raise FeaturelineError(self._error) from None
            self._error = ""
        return self._store

    def read(self, repo: RepoSpec, views: list[str]) -> tuple[dict[str, int], str]:
        """view -> mark (us since the epoch), and an error line ("" if none)."""
        mark_key = importlib.import_module(MARKS_MODULE).mark_key

        with self._lock:
            try:
                store = self._open()
                marks = {v: store.get_watermark(mark_key(repo.project, v)) for v in views}
            except FeaturelineError as exc:
                self._store = None
                return {}, str(exc)
        return {v: int(mark) for v, mark in marks.items() if mark is not None}, ""


def batch_views(repo: RepoSpec) -> list[str]:
    """The views materialize writes (batch, not label views), by name."""
    return [n for n, v in sorted(repo.views.items()) if v.kind == "batch" and not v.is_label_view]


MARK_METRIC = "featureline_materialize_mark_timestamp_seconds"


def marks_exposition(marks: dict[str, int]) -> str:
    """Prometheus text of the marks: how far each batch view is materialized, for the
    alert FeaturelineBatchFreshnessSLOBreach (now - mark against the view's
    freshness_slo, which serve exports). A batch job has no process to scrape, and the
    mark is what materialize leaves behind in the online store."""
    lines = [
        f"# HELP {MARK_METRIC} End of the newest window materialized into the online store, "
        "per batch view (materialize's mark), seconds since the epoch.",
        f"# TYPE {MARK_METRIC} gauge",
    ]
    lines += [f'{MARK_METRIC}{{view="{view}"}} {us / 1e6:.6f}' for view, us in sorted(marks.items())]
    return "\n".join(lines) + "\n"


def batch_rows(repo: RepoSpec, settings: Settings, marks: dict[str, int]) -> list[BatchRow]:
    # Here, not at the top: offline_layout imports pyarrow.dataset and pandas (~1 s),
    # which the UI's start need not wait for (the marks' warm-up imports them).
    from featureline.offline_layout import TILES_DIR

    offline = settings.resolved_offline_dir
    rows = []
    for name, view in sorted(repo.views.items()):
        if view.kind != "batch" or view.is_label_view:
            continue
        folder = offline / TILES_DIR / name if view.is_aggregating else offline / name
        mark = marks.get(name)
        rows.append(BatchRow(name, _iso_us(mark) if mark is not None else "", newest_partition(folder)))
    return rows


def served_age(window: m.Window, view: str) -> Quantiles:
    """Age of the values serve returned for `view` (serving time - event time)."""
    return quantiles(window, STALENESS, "view", view)
