"""The serving metrics' in-process accumulators (serving_api.metrics) export exactly
what prometheus_client's own observe/inc would: same buckets (le is inclusive), same
sums and counts, once flushed."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from featureline.serving_api import metrics

BUCKETS = (0.001, 0.002, 0.005, 1.0)
VALUES = [0.0, 0.0005, 0.001, 0.0010001, 0.002, 0.003, 0.7, 1.0, 5.0, 0.002]


def _pair(kind: type, name: str, **kw: object) -> tuple[object, object]:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    return (kind(name, "x", ["l"], registry=ours, **kw), kind(name, "x", ["l"], registry=theirs, **kw)), (
        ours,
        theirs,
    )


def test_local_histogram_and_counter_export_like_prometheus_client() -> None:
    (h_ours, h_ref), (reg_ours, reg_ref) = _pair(Histogram, "h", buckets=BUCKETS)
    (c_ours, c_ref), _ = _pair(Counter, "c")
    local_h = metrics._LocalHistogram(h_ours.labels("a"))  # type: ignore[attr-defined]
    local_c = metrics._LocalCounter(c_ours.labels("a"))  # type: ignore[attr-defined]
    for value in VALUES:
        local_h.observe(value)
        h_ref.labels("a").observe(value)  # type: ignore[attr-defined]
        local_c.inc(2)
        c_ref.labels("a").inc(2)  # type: ignore[attr-defined]
    metrics.flush()
    local_h.flush()
    local_c.flush()

    def text(registry: CollectorRegistry) -> list[str]:
        return [ln for ln in generate_latest(registry).decode().splitlines() if "_created" not in ln]

    assert text(reg_ours) == text(reg_ref)
    assert c_ours.labels("a")._value.get() == c_ref.labels("a")._value.get() == 2 * len(VALUES)  # type: ignore[attr-defined]


def test_observations_in_an_event_loop_are_flushed_within_the_interval() -> None:
    (h_ours, _), _ = _pair(Histogram, "h2", buckets=BUCKETS)
    child = h_ours.labels("b")  # type: ignore[attr-defined]

    async def observe_then_wait() -> float:
        local = metrics._LocalHistogram(child)
        metrics._CHILDREN[("test-h2", "b")] = local
        try:
            local.observe(0.5)
            pending = child._sum.get()
            await asyncio.sleep(metrics.FLUSH_INTERVAL_S + 0.2)
            assert pending == 0.0  # not yet flushed right after the observation
            return float(child._sum.get())
        finally:
            metrics._CHILDREN.pop(("test-h2", "b"), None)

    assert asyncio.run(observe_then_wait()) == 0.5
