"""Feature logging: the vectors `featureline serve` serves for a feature service with a
Feast `logging_config` (FileLoggingDestination), written in Feast's logging layout.

The request path only samples (one random() against the service's rate) and appends
a reference to the served frame and the request's entities to a bounded list under a
lock (~1 us); nothing is decoded and no Arrow is built there. A writer thread wakes
every `flush_s` seconds, or once `flush_rows` rows wait, and turns what waits into one
Arrow table per service (serving_api.feature_log_write) written as Parquet like Feast's
file offline store writes logged features. A full queue drops the request's rows and
counts them; it never blocks. Close flushes what waits.

Sampling is per request, as Feast's logger samples: a logged request logs all its rows.
pyarrow is imported by the writer thread only, so a worker that logs nothing never
loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from featureline.errors import BadInputError
from featureline.serving_api import metrics
from featureline.serving_api.feature_log_layout import LogLayout
from featureline.serving_api.frame import FeatureFrame
from featureline.specs import LoggingSpec, RepoSpec

log = logging.getLogger("featureline.serving.feature_log")

# What the writer learns per written batch: (service, rows written, rows lost).
Report = Callable[[str, int, int], None]


@dataclass(frozen=True)
class LogSettings:
    """The feature-logging limits (serving_api.limits.Limits fields, serve flags)."""

    queue_rows: int
    flush_rows: int
    flush_s: float
    sample_rate: float | None = None  # None: each service's own logging sample_rate


class ServiceLog:
    """One logged service's queue: frames waiting for the writer, bounded in rows."""

    def __init__(self, layout: LogLayout, spec: LoggingSpec, rate: float, queue_rows: int) -> None:
        self.layout = layout
        self.spec = spec
        self.rate = rate
        self.queue_rows = queue_rows
        self.lock = threading.Lock()
        self.waiting: list[tuple[FeatureFrame, Mapping[str, Sequence[Any]]]] = []
        self.rows = 0

    def offer(self, frame: FeatureFrame, entities: Mapping[str, Sequence[Any]]) -> int:
        """Queue the frame if there is room: the rows now waiting, or -1 (dropped)."""
        n = frame.n_rows
        with self.lock:
            if self.rows + n > self.queue_rows:
                return -1
            self.waiting.append((frame, entities))
            self.rows += n
            return self.rows

    def take(self) -> list[tuple[FeatureFrame, Mapping[str, Sequence[Any]]]]:
        with self.lock:
            batch, self.waiting, self.rows = self.waiting, [], 0
        return batch


class FeatureLogger:
    """Every logged service of a worker, and the writer thread that empties them."""

    def __init__(self, services: dict[str, ServiceLog], settings: LogSettings) -> None:
        self.services = services
        self.settings = settings
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._report: Report = _count_in_this_thread
        self._random = random.random

    @classmethod
    def for_repo(cls, repo: RepoSpec, settings: LogSettings) -> FeatureLogger | None:
        """A logger of the repo's services that have a logging config and a sample rate
        above 0 (None when there is none: serving pays nothing)."""
        if settings.queue_rows < 1 or settings.flush_rows < 1 or settings.flush_s <= 0:
            raise BadInputError(
                "feature logging: the queue and flush rows must be >= 1 and the flush interval > 0"
            )
        rate = settings.sample_rate
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise BadInputError(f"--feature-log-sample-rate must be in [0, 1], got {rate}")
        services = {}
        for name, spec in sorted(repo.services.items()):
            if spec.logging is None:
                continue
            service_rate = spec.logging.sample_rate if rate is None else rate
            if service_rate > 0:
                layout = LogLayout.of(repo, name)
                layout.check_partitions(spec.logging.partition_by)
                services[name] = ServiceLog(layout, spec.logging, service_rate, settings.queue_rows)
        return cls(services, settings) if services else None

    def offer(self, service: str, frame: FeatureFrame, entities: Mapping[str, Sequence[Any]]) -> None:
        """The request path: sample, then queue a reference or count a drop."""
        target = self.services.get(service)
        if target is None or self._random() >= target.rate:
            return
        waiting = target.offer(frame, entities)
        if waiting < 0:
            metrics.observe_feature_log(service, 0, frame.n_rows)
        elif waiting >= self.settings.flush_rows:
            self._wake.set()

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the writer; its counts reach the metrics through `loop` (the worker's
        event loop: metrics are counted in that thread only)."""
        for name in self.services:
            metrics.observe_feature_log(name, 0, 0)  # exported as 0 from the start
        if loop is not None:
            self._report = lambda *a: _call_in_loop(loop, metrics.observe_feature_log, *a)
        self._thread = threading.Thread(target=self._run, name="feature-log-writer", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the writer after it wrote what waits (blocking: run it in a thread)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        else:
            self.flush()

    def flush(self) -> None:
        """Write what waits, now (the writer's step; also callable without a thread)."""
        from featureline.serving_api.feature_log_write import write_batch

        for name, target in self.services.items():
            batch = target.take()
            if not batch:
                continue
            n = sum(frame.n_rows for frame, _ in batch)
            try:
                write_batch(target.layout, target.spec, batch)
            except Exception as exc:  # a full disk or a lost bucket must not stop serving
                log.warning("feature log of %s: %d rows lost: %s", name, n, exc)
                self._report(name, 0, n)
                continue
            self._report(name, n, 0)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.settings.flush_s)
            self._wake.clear()
            began = time.monotonic()
            self.flush()
            log.debug("feature log flushed in %.3f s", time.monotonic() - began)
        self.flush()


def _count_in_this_thread(service: str, rows: int, dropped: int) -> None:
    metrics.observe_feature_log(service, rows, dropped)


def _call_in_loop(loop: asyncio.AbstractEventLoop, fn: Report, *args: Any) -> None:
    # A closed loop (shutdown) raises: the process's counts end there.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)
