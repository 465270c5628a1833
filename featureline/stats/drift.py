"""Drift of a feature between a reference and recent data, from their statistics only.

Two numbers per feature, because each alone misleads:
- the population stability index (PSI) measures how far the distribution moved, on the
  reference's bins: deciles of a numeric feature (10 bins, fewer where values repeat;
  edges on the sketch's buckets, so a bin holds 10% give or take a bucket's mass),
  the reference's 20 most frequent values (+ every other value, one bin) of a string or
  bool one; nulls and non-finite values are one more bin, so a feature that starts
  arriving empty drifts too. Bin shares are floored at 1e-4 (an empty bin would make
  the log infinite). Default threshold 0.2: the usual reading (credit scoring, where
  PSI comes from) is < 0.1 stable, 0.1-0.2 a moderate shift, > 0.2 a significant one.
- a two-sample test says whether the move is more than sampling noise: Kolmogorov-
  Smirnov on the two CDFs (numeric; both sketches share one bucket grid, so the CDFs
  are exact at every bucket boundary: D is the true statistic at the sketch's 1%
  resolution; KS sees values only, so the missing share gets a chi-square too and the
  smaller p-value, doubled, counts), chi-square of homogeneity on the PSI's bins
  (string, bool). Default
  p < 0.01: one false alarm per 100 unchanged features checked, where 0.05 would
  raise about one a day on a repo of 20 features checked daily.
A feature has drifted when both say so: PSI over its threshold and p under its. With
millions of rows the test flags shifts too small to matter (D > 1.63 / sqrt(n) is
significant), and with a few dozen rows PSI swings past 0.2 by chance; together they
flag a shift that is both large and real.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from featureline.stats.column import ColumnStats

DEFAULT_PSI_THRESHOLD = 0.2
DEFAULT_P_THRESHOLD = 0.01
PSI_FLOOR = 1e-4
PSI_BINS = 10
CATEGORY_BINS = 20


@dataclass(frozen=True)
class Thresholds:
    psi: float = DEFAULT_PSI_THRESHOLD
    p_value: float = DEFAULT_P_THRESHOLD


@dataclass(frozen=True)
class FeatureDrift:
    view: str
    feature: str
    kind: str
    test: str  # "ks", "chi2", or "" (nothing to compare)
    psi: float | None
    statistic: float | None  # KS D, or the chi-square statistic
    p_value: float | None
    psi_threshold: float
    p_threshold: float
    drifted: bool
    reference_count: int
    current_count: int
    note: str = ""
    # The PSI's bins, for a chart of the two distributions: a label per bin ("<= 12.5",
    # "(12.5, 40]", "> 99", a category, "other", "missing") and each side's share.
    bins: tuple[str, ...] = ()
    reference_shares: tuple[float, ...] = ()
    current_shares: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI of two count vectors over the same bins (bins empty on both sides skipped)."""
    keep = (expected > 0) | (actual > 0)
    e = np.maximum(expected[keep] / max(expected.sum(), 1), PSI_FLOOR)
    a = np.maximum(actual[keep] / max(actual.sum(), 1), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_p_value(d: float, n: int, m: int) -> float:
    """Asymptotic two-sample Kolmogorov-Smirnov p-value (Stephens' small-sample
    correction, as in Numerical Recipes' probks)."""
    if n == 0 or m == 0:
        return 1.0
    en = math.sqrt(n * m / (n + m))
    lam = (en + 0.12 + 0.11 / en) * d
    if lam < 1e-3:
        return 1.0
    total, sign = 0.0, 1.0
    for j in range(1, 101):
        term = sign * 2.0 * math.exp(-2.0 * j * j * lam * lam)
        total += term
        if abs(term) < 1e-12:
            return min(max(total, 0.0), 1.0)
        sign = -sign
    return 1.0  # the series did not settle: lam is tiny, nothing is significant


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for a chi-square variable of `df` degrees: Q(df/2, x/2)."""
    if df <= 0:
        return 1.0
    return gamma_q(df / 2.0, x / 2.0)


def gamma_q(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function (series below a + 1, continued
    fraction above: Numerical Recipes 6.2)."""
    if x <= 0:
        return 1.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        ap = a
        for _ in range(1000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_front) * h)


def _missing(s: ColumnStats) -> int:
    return s.nulls + s.non_finite


@dataclass(frozen=True)
class _Measured:
    psi: float
    statistic: float
    p_value: float
    bins: tuple[str, ...]
    expected: np.ndarray  # counts per bin, reference
    actual: np.ndarray  # counts per bin, recent

    def shares(self, counts: np.ndarray) -> tuple[float, ...]:
        return tuple(round(float(c) / max(float(counts.sum()), 1.0), 6) for c in counts)


def _edge_labels(edges: np.ndarray) -> tuple[str, ...]:
    if not len(edges):
        return ("values", "missing")
    inner = [f"({a:.4g}, {b:.4g}]" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return (f"<= {edges[0]:.4g}", *inner, f"> {edges[-1]:.4g}", "missing")


def _numeric(ref: ColumnStats, cur: ColumnStats) -> _Measured:
    """PSI on the reference's deciles, KS D and p-value."""
    ref_values, ref_counts = ref.sketch.buckets()
    cur_values, cur_counts = cur.sketch.buckets()
    qs = [i / PSI_BINS for i in range(1, PSI_BINS)]
    edges = np.unique([v for v in ref.sketch.quantiles(qs) if v is not None])

    def binned(values: np.ndarray, counts: np.ndarray, missing: int) -> np.ndarray:
        bins = np.searchsorted(edges, values, side="left")  # bin j: (edge j-1, edge j]
        return np.append(np.bincount(bins, weights=counts, minlength=len(edges) + 1), missing)

    expected = binned(ref_values, ref_counts, _missing(ref))
    actual = binned(cur_values, cur_counts, _missing(cur))
    d = ks_statistic(ref_values, ref_counts, cur_values, cur_counts)
    p = ks_p_value(d, int(ref_counts.sum()), int(cur_counts.sum()))
    if _missing(ref) or _missing(cur):
        # KS sees values only; a feature that starts arriving empty is the missing
        # share's chi-square. The smaller p-value of the two, doubled (Bonferroni).
        present = np.asarray([[ref.values, _missing(ref)], [cur.values, _missing(cur)]], np.float64)
        p = min(1.0, 2 * min(p, chi2_homogeneity(present)[1]))
    return _Measured(psi(expected, actual), d, p, _edge_labels(edges), expected, actual)


def ks_statistic(
    ref_values: np.ndarray, ref_counts: np.ndarray, cur_values: np.ndarray, cur_counts: np.ndarray
) -> float:
    """max |F_ref - F_cur| over every value of either side (ascending values)."""
    n, m = int(ref_counts.sum()), int(cur_counts.sum())
    if n == 0 or m == 0:
        return 0.0
    grid = np.union1d(ref_values, cur_values)

    def cdf(values: np.ndarray, counts: np.ndarray, total: int) -> np.ndarray:
        at = np.searchsorted(values, grid, side="right")  # values <= each grid point
        cum = np.concatenate([[0], np.cumsum(counts)])
        return np.asarray(cum[at] / total, np.float64)

    return float(np.max(np.abs(cdf(ref_values, ref_counts, n) - cdf(cur_values, cur_counts, m))))


def chi2_homogeneity(table: np.ndarray) -> tuple[float, float]:
    """(statistic, p-value) of a 2 x k table of counts; columns empty on both rows and
    a row without counts are left out."""
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or np.any(table.sum(axis=1) == 0):
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    return stat, chi2_sf(stat, table.shape[1] - 1)


def _categorical(ref: ColumnStats, cur: ColumnStats) -> _Measured:
    """PSI, chi-square statistic and p-value on the reference's top values."""
    top = [v for v, _ in sorted(ref.top.items(), key=lambda kv: (-kv[1], kv[0]))[:CATEGORY_BINS]]

    def binned(s: ColumnStats) -> np.ndarray:
        counts = [s.top.get(v, 0) for v in top]
        return np.asarray([*counts, s.values - sum(counts), _missing(s)], np.float64)

    e, a = binned(ref), binned(cur)
    stat, p = chi2_homogeneity(np.vstack([e, a]))
    return _Measured(psi(e, a), stat, p, (*top, "other", "missing"), e, a)


def compare(
    view: str, feature: str, ref: ColumnStats, cur: ColumnStats, thresholds: Thresholds
) -> FeatureDrift:
    """The drift of one feature from `ref` to `cur`."""
    base = FeatureDrift(view, feature, ref.kind, "", None, None, None, thresholds.psi, thresholds.p_value,
                        False, ref.count, cur.count)  # fmt: skip
    if ref.kind != cur.kind:
        note = f"reference is {ref.kind}, recent data {cur.kind}: its type changed"
        return replace(base, drifted=True, note=note)
    if ref.kind == "other":
        return replace(base, note="lists, maps and structs are not compared")
    if ref.count == 0 or cur.count == 0:
        return replace(base, note="no rows on one side")
    m = (_numeric if ref.kind == "numeric" else _categorical)(ref, cur)
    return replace(
        base,
        test="ks" if ref.kind == "numeric" else "chi2",
        psi=m.psi,
        statistic=m.statistic,
        p_value=m.p_value,
        drifted=m.psi > thresholds.psi and m.p_value < thresholds.p_value,
        bins=m.bins,
        reference_shares=m.shares(m.expected),
        current_shares=m.shares(m.actual),
    )
