"""Drift on purpose: reference statistics of generated data, then recent data with the
mean shifted, categories swapped or values gone missing crosses the thresholds, while
a fresh sample of the same distribution does not; the report and its metrics say so."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families

from featureline.errors import BadInputError
from featureline.stats.column import ColumnStats
from featureline.stats.drift import FeatureDrift, Thresholds, compare, psi
from featureline.stats.report import DriftReport, drift_report, exposition
from featureline.stats.table import Column, StatsSet, table_stats

COUNTRIES = ["FR", "DE", "US", "GB", "ES"]


def _sample(seed: int, rows: int = 20_000, *, mean: float = 100.0, weights: list[float] | None = None,
            nulls: float = 0.0) -> pa.Table:  # fmt: skip
    rng = np.random.default_rng(seed)
    amount = rng.normal(mean, 20.0, rows)
    country = rng.choice(COUNTRIES, rows, p=weights or [0.4, 0.3, 0.15, 0.1, 0.05])
    return pa.table({
        "amount": pa.array(amount, mask=rng.random(rows) < nulls),
        "country": pa.array(country.tolist()),
        "vip": pa.array(rng.random(rows) < 0.1),
    })  # fmt: skip


def _stats(table: pa.Table, kind: str) -> StatsSet:
    columns = [Column(n, "txn", n) for n in table.column_names]
    return StatsSet({"kind": kind}, table_stats(table, columns, None))


def _report(current: pa.Table) -> dict[str, FeatureDrift]:
    report = drift_report(
        "fraud", _stats(_sample(1), "training_set"), _stats(current, "offline"), Thresholds()
    )
    return {f.feature: f for f in report.features}


def test_an_unshifted_sample_does_not_drift() -> None:
    for feature in _report(_sample(2)).values():
        assert not feature.drifted, feature
        assert feature.psi < 0.01 and feature.p_value > 0.01, feature


def test_a_shifted_mean_drifts() -> None:
    found = _report(_sample(2, mean=112.0))  # +0.6 standard deviation
    amount = found["amount"]
    assert amount.drifted and amount.test == "ks"
    assert amount.psi > 0.2 and amount.p_value < 1e-6
    assert not found["country"].drifted
    # The chart's bins: the reference's deciles, then "missing"; recent values pile into
    # the upper bins. Deciles fall on sketch buckets (2% wide: ~2 units at 100, where
    # N(100, 20) puts ~4% of its mass), so a bin holds 10% +- 4%.
    assert len(amount.bins) == len(amount.reference_shares) == len(amount.current_shares) == 11
    assert (
        amount.bins[0].startswith("<= ") and amount.bins[-2].startswith("> ") and amount.bins[-1] == "missing"
    )
    assert all(abs(share - 0.1) < 0.04 for share in amount.reference_shares[:-1])
    assert sum(amount.current_shares[-3:-1]) > 0.4 and sum(amount.current_shares) == pytest.approx(1.0)


def test_swapped_categories_drift() -> None:
    found = _report(_sample(2, weights=[0.05, 0.1, 0.15, 0.3, 0.4]))
    country = found["country"]
    assert country.drifted and country.test == "chi2" and country.psi > 1.0
    assert not found["amount"].drifted
    assert country.bins == ("FR", "DE", "US", "GB", "ES", "other", "missing")
    assert country.current_shares[0] == pytest.approx(0.05, abs=0.01)


def test_values_gone_missing_drift() -> None:
    amount = _report(_sample(2, nulls=0.5))["amount"]
    assert amount.drifted and amount.psi > 0.2


def test_a_small_sample_needs_the_test_too() -> None:
    # 40 rows: PSI over deciles is noisy (4 rows a bin); the same shift that PSI sees
    # here is not significant at p < 0.01, so it is not called drift.
    ref = ColumnStats.of(_sample(1)["amount"])
    small = ColumnStats.of(_sample(5, rows=40, mean=104.0)["amount"])
    result = compare("txn", "amount", ref, small, Thresholds())
    assert result.psi is not None and result.p_value is not None
    assert result.p_value > 0.01 and not result.drifted
    loose = compare("txn", "amount", ref, small, Thresholds(psi=result.psi / 2, p_value=1.0))
    assert loose.drifted  # thresholds are the caller's


def test_psi_of_identical_counts_is_zero_and_grows_with_the_shift() -> None:
    base = np.array([10.0, 20, 30, 40])
    assert psi(base, base * 3) == 0.0
    assert 0 < psi(base, np.array([12.0, 20, 30, 38])) < psi(base, np.array([40.0, 30, 20, 10]))


def test_a_changed_type_is_drift_and_other_kinds_are_not_compared() -> None:
    num = ColumnStats.of(pa.array([1.0, 2.0]))
    text = ColumnStats.of(pa.array(["a", "b"]))
    changed = compare("v", "f", num, text, Thresholds())
    assert changed.drifted and "type changed" in changed.note
    lists = ColumnStats.of(pa.array([[1], [2]]))
    assert not compare("v", "f", lists, lists, Thresholds()).drifted


def test_report_json_and_metrics() -> None:
    reference = _stats(_sample(1), "training_set")
    report = drift_report("fraud", reference, _stats(_sample(2, mean=112.0), "offline"), Thresholds())
    again = DriftReport.from_json(report.to_json())
    assert again.features == report.features and again.thresholds == report.thresholds
    samples = {
        (s.name, s.labels.get("feature", "")): s
        for family in text_string_to_metric_families(exposition([report]))
        for s in family.samples
    }
    assert samples[("featureline_feature_drift", "amount")].value == 1.0
    assert samples[("featureline_feature_drift", "country")].value == 0.0
    psi_amount = samples[("featureline_feature_drift_psi", "amount")]
    assert psi_amount.value > 0.2
    assert psi_amount.labels == {"reference": "fraud", "view": "txn", "feature": "amount"}
    assert samples[("featureline_feature_drift_report_timestamp_seconds", "")].value == report.created_at
    with pytest.raises(BadInputError, match="share no feature"):
        other = StatsSet({}, [f for f in reference.features if f.feature == "nope"])
        drift_report("x", reference, other, Thresholds())


@pytest.mark.parametrize("name", ['quote"d', "back\\slash", "new\nline"])
def test_label_values_are_escaped(name: str) -> None:
    report = drift_report(
        name, _stats(_sample(1, rows=200), "a"), _stats(_sample(2, rows=200), "b"), Thresholds()
    )
    families = list(text_string_to_metric_families(exposition([report])))
    assert {s.labels.get("reference") for f in families for s in f.samples} == {name}
