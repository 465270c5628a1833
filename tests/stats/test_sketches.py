"""The sketches keep their stated error: HyperLogLog within 3 standard errors (1.6% each)
of the true distinct count, quantiles within 1% (relative) of numpy's exact ones at the
same rank; merging days gives exactly the sketch of the days together. And the
p-value functions agree with the published tables."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from featureline.stats.drift import chi2_sf, gamma_q, ks_p_value
from featureline.stats.hll import STANDARD_ERROR, HyperLogLog
from featureline.stats.sketch import RELATIVE_ACCURACY, QuantileSketch

QS = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99]


def _distinct(kind: str, n: int, seed: int) -> pa.Array:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(n * 10)[:n]
    if kind == "int":
        return pa.array(ids)
    if kind == "float":
        return pa.array(ids * 0.37 - 1e4)
    return pa.array([f"user-{i}" for i in ids])


@pytest.mark.parametrize("kind", ["int", "float", "string"])
@pytest.mark.parametrize("n", [50, 2_000, 20_000, 200_000])
def test_hll_is_within_three_standard_errors(kind: str, n: int) -> None:
    if kind == "string" and n > 20_000:
        n = 20_000  # Python-level hashing: keep the case under 0.1 s
    values = _distinct(kind, n, seed=n)
    hll = HyperLogLog()
    # Each value three times, in two batches: repeats do not count.
    hll.add(values)
    hll.add(pa.concat_arrays([values, values]))
    assert abs(hll.estimate() / n - 1) < 3 * STANDARD_ERROR


def test_hll_merge_is_the_union_and_survives_its_text_form() -> None:
    a, b = HyperLogLog(), HyperLogLog()
    a.add(pa.array(np.arange(0, 60_000)))
    b.add(pa.array(np.arange(40_000, 100_000)))  # 20k shared
    union = HyperLogLog()
    union.add(pa.array(np.arange(0, 100_000)))
    merged = a.merge(b)
    assert np.array_equal(merged.registers, union.registers)
    assert abs(merged.estimate() / 100_000 - 1) < 3 * STANDARD_ERROR
    assert HyperLogLog.from_text(merged.to_text()).estimate() == merged.estimate()
    assert HyperLogLog().estimate() == 0.0


def _data(kind: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    if kind == "lognormal":  # amounts: 1..1e5
        return rng.lognormal(4, 1.5, 50_000)
    if kind == "normal":  # negative and positive, some exact zeros
        return np.concatenate([rng.normal(0, 50, 40_000), np.zeros(1_000)])
    return rng.integers(0, 30, 20_000).astype(np.float64)  # counts


@pytest.mark.parametrize("kind", ["lognormal", "normal", "counts"])
def test_quantiles_are_within_their_relative_error(kind: str) -> None:
    values = _data(kind)
    sketch = QuantileSketch()
    sketch.add(values)
    exact = np.quantile(values, QS, method="lower")
    got = np.asarray(sketch.quantiles(QS), np.float64)
    assert sketch.count == len(values)
    assert np.all(np.abs(got - exact) <= RELATIVE_ACCURACY * np.abs(exact) + 1e-12), (got, exact)


def test_merged_days_are_the_sketch_of_all_days() -> None:
    values = _data("normal")
    days = np.array_split(values, 5)
    merged = QuantileSketch()
    for day in days:
        one = QuantileSketch()
        one.add(day)
        merged = merged.merge(one)
    whole = QuantileSketch()
    whole.add(values)
    assert merged.to_dict() == whole.to_dict()
    assert QuantileSketch.from_dict(whole.to_dict()).quantiles(QS) == whole.quantiles(QS)


def test_empty_sketch_has_no_quantiles() -> None:
    assert QuantileSketch().quantiles([0.5]) == [None]


@pytest.mark.parametrize(
    ("x", "df", "p"),
    [(3.841459, 1, 0.05), (6.634897, 1, 0.01), (18.307038, 10, 0.05), (124.342113, 100, 0.05), (0.0, 3, 1.0)],
)
def test_chi_square_upper_tail(x: float, df: int, p: float) -> None:
    assert chi2_sf(x, df) == pytest.approx(p, rel=1e-5, abs=1e-12)


def test_incomplete_gamma_both_branches() -> None:
    # Q(1, x) = exp(-x): the series (x < a + 1) and the continued fraction (x >= a + 1).
    for x in (0.3, 1.5, 7.0):
        assert gamma_q(1.0, x) == pytest.approx(np.exp(-x), rel=1e-10)


@pytest.mark.parametrize(("lam", "p"), [(1.36, 0.0495), (1.63, 0.0098), (0.5, 0.964)])
def test_kolmogorov_tail(lam: float, p: float) -> None:
    # Large samples: (en + 0.12 + 0.11 / en) ~ en, so D = lam / en gives Q_KS(lam).
    n = 10**8
    en = np.sqrt(n / 2)
    assert ks_p_value(lam / en, n, n) == pytest.approx(p, abs=2e-3)
