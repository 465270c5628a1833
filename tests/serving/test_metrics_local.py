"""The serving metrics' in-process accumulators (serving_api.metrics, exported by
serving_api.metrics_collector) export exactly what prometheus_client's own
observe/inc would: same buckets (le is inclusive), same sums and counts, once flushed;
with several workers, /metrics sums every worker's counts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from featureline.serving_api import metrics
from featureline.serving_api.metrics_collector import FamilySpec, SnapshotCollector, read_snapshots

BUCKETS = (0.001, 0.002, 0.005, 1.0)
VALUES = [0.0, 0.0005, 0.001, 0.0010001, 0.002, 0.003, 0.7, 1.0, 5.0, 0.002]
H_SPEC = FamilySpec("h", "x", ("l",), BUCKETS, "histogram")
C_SPEC = FamilySpec("c", "x", ("l",))


def _text(registry: CollectorRegistry) -> list[str]:
    return [ln for ln in generate_latest(registry).decode().splitlines() if "_created" not in ln]


def test_local_histogram_and_counter_export_like_prometheus_client() -> None:
    reg_ref = CollectorRegistry()
    h_ref = Histogram("h", "x", ["l"], registry=reg_ref, buckets=BUCKETS)
    c_ref = Counter("c", "x", ["l"], registry=reg_ref)
    h_ours, c_ours = metrics.Family(H_SPEC), metrics.Family(C_SPEC)
    reg_ours = CollectorRegistry()
    reg_ours.register(SnapshotCollector([H_SPEC, C_SPEC], lambda: [metrics.snapshot([h_ours, c_ours])]))
    for value in VALUES:
        h_ours.histogram(("a",)).observe(value)
        h_ref.labels("a").observe(value)
        c_ours.counter(("a",)).inc(2)
        c_ref.labels("a").inc(2)
    metrics.flush()

    assert _text(reg_ours) == _text(reg_ref)
    ours = reg_ours.get_sample_value("c_total", {"l": "a"})
    assert ours == reg_ref.get_sample_value("c_total", {"l": "a"}) == 2 * len(VALUES)


def test_observations_in_an_event_loop_are_flushed_within_the_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    spec = FamilySpec("h2", "x", ("l",), BUCKETS, "histogram")
    registry = CollectorRegistry()
    registry.register(SnapshotCollector([spec], lambda: read_snapshots(str(tmp_path))))

    async def observe_then_wait() -> float:
        metrics.FAMILIES["h2"] = family = metrics.Family(spec)
        try:
            family.histogram(("b",)).observe(0.5)
            pending = registry.get_sample_value("h2_sum", {"l": "b"}) or 0.0
            await asyncio.sleep(metrics.FLUSH_INTERVAL_S + 0.2)
            assert pending == 0.0  # not yet flushed right after the observation
            return float(registry.get_sample_value("h2_sum", {"l": "b"}) or 0.0)
        finally:
            metrics.FAMILIES.pop("h2", None)

    assert asyncio.run(observe_then_wait()) == 0.5


def test_metrics_sum_every_workers_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another worker's file is added to this one's: label names sorted, no _created,
    as prometheus_client's multiprocess mode exposed them."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    name = metrics.REQUEST_SECONDS.name
    other = {name: [[["/x", "1"], [1] + [0] * 15, 0.0004]], metrics.REQUESTS.name: [[["/x", "200"], [], 3.0]]}
    (tmp_path / "featureline-serving-1-abc.json").write_text(json.dumps(other))
    before = metrics.snapshot(metrics.FAMILIES.values()).get(metrics.REQUESTS.name, [])
    mine = sum(total for labels, _, total in before if labels == ("/x", "200"))
    metrics.observe_request("/x", 1, 0.0007, "200")
    text = metrics.render()[0].decode()
    assert f'{name}_bucket{{batch="1",endpoint="/x",le="0.0005"}} 1.0' in text
    assert f'{name}_bucket{{batch="1",endpoint="/x",le="0.001"}} 2.0' in text
    assert f'{name}_count{{batch="1",endpoint="/x"}} 2.0' in text
    assert f'featureline_serving_requests_total{{code="200",endpoint="/x"}} {mine + 4.0}' in text
    assert "_created" not in text
