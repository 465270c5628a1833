"""Exports the serving metrics that serving_api.metrics accumulates, through
prometheus_client's public Collector API.

serving_api.metrics counts observations in plain Python lists (a prometheus_client
value write costs a mmap'd write and a getpid() syscall, ~1 us here, ~10 per request);
this module turns those counts into HistogramMetricFamily / CounterMetricFamily. With
several workers (PROMETHEUS_MULTIPROC_DIR set), each worker writes its cumulative
counts to a JSON file in that directory about once a second, and the worker answering
/metrics sums every file, so all workers are reported as prometheus_client's
multiprocess mode would: no `_created` series, label names in sorted order. Kept out of
the mypyc-compiled metrics module: a compiled class cannot subclass the Collector ABC.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# One labelled child: (label values, bucket counts (not cumulative; [] for a counter), sum).
Sample = tuple[tuple[str, ...], list[int], float]
# A process's samples by metric name.
Snapshot = dict[str, list[Sample]]
_PREFIX = "featureline-serving-"


@dataclass(frozen=True)
class FamilySpec:
    name: str
    documentation: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()  # upper bounds without +Inf; () for a counter
    kind: str = "counter"  # or "histogram"

    def bounds(self) -> list[float]:
        return [*map(float, self.buckets), float("inf")]


@dataclass(eq=False)  # registries key collectors by identity
class SnapshotCollector(Collector):
    specs: list[FamilySpec]
    snapshots: Callable[[], Iterable[Snapshot]] = field(default=lambda: ())

    def collect(self) -> Iterator[Metric]:
        totals: dict[str, dict[tuple[str, ...], tuple[list[int], float]]] = {}
        for snapshot in self.snapshots():
            for name, samples in snapshot.items():
                merged = totals.setdefault(name, {})
                for labels, counts, total in samples:
                    had = merged.get(tuple(labels))
                    if had is None:
                        merged[tuple(labels)] = (list(counts), total)
                    else:
                        summed = [a + b for a, b in zip(had[0], counts, strict=True)]
                        merged[tuple(labels)] = (summed, had[1] + total)
        for spec in self.specs:
            if totals.get(spec.name):
                yield _family(spec, totals[spec.name])


@dataclass(eq=False)
class ConstantGauges(Collector):
    """A gauge whose values are fixed at start (one per label set), such as the repo's
    freshness SLOs: every worker exports the same numbers, so no files are needed."""

    name: str
    documentation: str
    labels: tuple[str, ...]
    values: Callable[[], dict[tuple[str, ...], float]]

    def collect(self) -> Iterator[Metric]:
        values = self.values()
        if values:
            gauge = GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))
            for key, value in sorted(values.items()):
                gauge.add_metric(list(key), value)
            yield gauge


def _family(spec: FamilySpec, samples: dict[tuple[str, ...], tuple[list[int], float]]) -> Metric:
    order = sorted(range(len(spec.labels)), key=lambda i: spec.labels[i])
    names = [spec.labels[i] for i in order]
    if spec.kind == "histogram":
        les = [floatToGoString(b) for b in spec.bounds()]
        hist = HistogramMetricFamily(spec.name, spec.documentation, labels=names)
        for values, (counts, total) in sorted(samples.items()):
            cumulative, running = [], 0.0
            for le, count in zip(les, counts, strict=True):
                running += count
                cumulative.append((le, running))
            hist.add_metric([values[i] for i in order], cumulative, total)
        return hist
    counter = CounterMetricFamily(spec.name, spec.documentation, labels=names)
    for values, (_, total) in sorted(samples.items()):
        counter.add_metric([values[i] for i in order], total)
    return counter


def snapshot_path(directory: str) -> Path:
    """This process's file: pid plus a random part, so a restarted worker that gets a
    dead one's pid adds its counts instead of overwriting them."""
    return Path(directory) / f"{_PREFIX}{os.getpid()}-{_TOKEN}.json"


def write_snapshot(directory: str, snapshot: Snapshot) -> None:
    path = snapshot_path(directory)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(snapshot))
    os.replace(tmp, path)  # readers see the old or the new file, never half of one


def read_snapshots(directory: str) -> list[Snapshot]:
    out: list[Snapshot] = []
    for path in sorted(Path(directory).glob(f"{_PREFIX}*.json")):
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):  # removed or replaced while listed
            continue
        out.append(
            {name: [(tuple(s[0]), list(s[1]), float(s[2])) for s in rows] for name, rows in raw.items()}
        )
    return out


_TOKEN = uuid.uuid4().hex[:8]
