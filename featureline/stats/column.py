"""Statistics of one feature column (one day, or several merged), on Arrow arrays.

Every part merges exactly, so a date range's statistics are the merge of its days':
count and nulls add; mean and variance merge by Chan's formula (mean and M2, the sum of
squared deviations: no cancellation as with sums of squares); min and max; the quantile
sketch (featureline.stats.sketch, 1% relative error) and the HyperLogLog distinct count
(featureline.stats.hll, 1.6% standard error). Strings and bools keep value counts: every
bool value, and a string column's TOP_VALUES most frequent per day (exact while each is
among every day's top 100; beyond, a merged count can miss days where it was not).

Kinds, by Arrow type: numeric (integers, floats, decimals, timestamps as epoch
seconds), bool, string (string, binary: counts and distinct only), other (lists,
maps, structs: count and nulls only). NaN and infinities are neither nulls nor
values: they are counted apart (`non_finite`) and left out of moments and quantiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featureline.stats.hll import HyperLogLog
from featureline.stats.sketch import QuantileSketch

TOP_VALUES = 100
QUANTILES = (0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99)
CHART_BINS = 20  # bars of the chart histogram: enough shape for a 300-pixel chart


def kind_of(arrow_type: pa.DataType) -> str:
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_decimal(arrow_type)
        or pa.types.is_timestamp(arrow_type)
    ):
        return "numeric"
    if (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_binary(arrow_type)
    ):
        return "string"
    return "other"


def numeric_values(column: pa.Array) -> np.ndarray:
    """float64 of the non-null values (timestamps as epoch seconds)."""
    arr = column.drop_null()
    if pa.types.is_timestamp(arr.type):
        micros = arr.cast(pa.timestamp("us", arr.type.tz)).cast(pa.int64())
        return np.asarray(micros.to_numpy(zero_copy_only=False), np.float64) / 1e6
    return np.asarray(arr.cast(pa.float64()).to_numpy(zero_copy_only=False), np.float64)


@dataclass
class ColumnStats:
    kind: str
    count: int = 0  # rows, nulls included
    nulls: int = 0
    non_finite: int = 0  # NaN and infinities of a float column
    mean: float = 0.0  # of the finite values
    m2: float = 0.0  # sum of squared deviations from the mean
    min: float | None = None
    max: float | None = None
    sketch: QuantileSketch = field(default_factory=QuantileSketch)
    hll: HyperLogLog = field(default_factory=HyperLogLog)
    top: dict[str, int] = field(default_factory=dict)  # value counts (string, bool)

    @property
    def values(self) -> int:
        """Non-null, finite values: what moments and quantiles describe."""
        return self.count - self.nulls - self.non_finite

    @classmethod
    def of(cls, column: pa.Array | pa.ChunkedArray) -> ColumnStats:
        arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        stats = cls(kind_of(arr.type), count=len(arr), nulls=arr.null_count)
        if stats.kind == "numeric":
            stats._add_numeric(numeric_values(arr))
            stats.hll.add(arr)
        elif stats.kind in ("bool", "string"):
            counts = pc.value_counts(arr.drop_null())
            pairs = zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
            stats.top = _top({_label(v): int(n) for v, n in pairs})
            stats.hll.add(arr)
        return stats

    def _add_numeric(self, values: np.ndarray) -> None:
        finite = values[np.isfinite(values)]
        self.non_finite = int(values.size - finite.size)
        if finite.size:
            self.mean = float(finite.mean())
            self.m2 = float(((finite - self.mean) ** 2).sum())
            self.min, self.max = float(finite.min()), float(finite.max())
            self.sketch.add(finite)

    def merge(self, other: ColumnStats) -> ColumnStats:
        if other.kind != self.kind:
            raise ValueError(f"cannot merge {self.kind} statistics with {other.kind} ones")
        a, b = self.values, other.values
        n = a + b
        delta = other.mean - self.mean
        top = dict(self.top)
        for value, c in other.top.items():
            top[value] = top.get(value, 0) + c
        return ColumnStats(
            kind=self.kind,
            count=self.count + other.count,
            nulls=self.nulls + other.nulls,
            non_finite=self.non_finite + other.non_finite,
            mean=self.mean + delta * b / n if n else 0.0,
            m2=self.m2 + other.m2 + delta * delta * a * b / n if n else 0.0,
            min=_pick(min, self.min, other.min),
            max=_pick(max, self.max, other.max),
            sketch=self.sketch.merge(other.sketch),
            hll=self.hll.merge(other.hll),
            top=_top(top),
        )

    @property
    def std(self) -> float | None:
        """Population standard deviation (numpy's default, ddof=0)."""
        return math.sqrt(self.m2 / self.values) if self.values else None

    def quantiles(self) -> dict[str, float | None]:
        raw = self.sketch.quantiles(list(QUANTILES))
        out: dict[str, float | None] = {}
        for q, v in zip(QUANTILES, raw, strict=True):
            if v is not None and self.min is not None and self.max is not None:
                v = min(max(v, self.min), self.max)
            out[f"p{round(q * 100)}"] = v
        return out

    def histogram(self, bins: int = CHART_BINS) -> dict[str, list[float]]:
        """Equal-width bars over [min, max] for charts, from the sketch's buckets (each
        bucket's count goes to the bar holding its value: 1% resolution)."""
        if self.min is None or self.max is None:
            return {"edges": [], "counts": []}
        values, counts = self.sketch.buckets()
        lo, hi = self.min, self.max
        if hi <= lo:
            return {"edges": [lo, hi], "counts": [float(counts.sum())]}
        edges = np.linspace(lo, hi, bins + 1)
        bar = np.clip(np.searchsorted(edges, np.clip(values, lo, hi), side="right") - 1, 0, bins - 1)
        heights = np.bincount(bar, weights=counts, minlength=bins)
        return {"edges": edges.tolist(), "counts": heights.tolist()}

    def summary(self) -> dict[str, Any]:
        """What people read: rates, moments, quantiles, distinct, top values, chart."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "count": self.count,
            "nulls": self.nulls,
            "null_rate": self.nulls / self.count if self.count else None,
        }
        if self.kind == "numeric":
            out.update(non_finite=self.non_finite, mean=self.mean if self.values else None, std=self.std)
            out.update(min=self.min, max=self.max, **self.quantiles(), histogram=self.histogram())
        if self.kind in ("numeric", "bool", "string"):
            out["distinct"] = round(self.hll.estimate())
        if self.kind in ("bool", "string"):
            out["top"] = sorted(self.top.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
        if self.kind == "bool":
            true = self.top.get("true", 0)
            out["mean"] = true / self.values if self.values else None
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "count": self.count,
            "nulls": self.nulls,
            "non_finite": self.non_finite,
            "mean": self.mean,
            "m2": self.m2,
            "min": self.min,
            "max": self.max,
            "sketch": self.sketch.to_dict(),
            "hll": self.hll.to_text(),
            "top": self.top,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnStats:
        return cls(
            kind=str(d["kind"]),
            count=int(d["count"]),
            nulls=int(d["nulls"]),
            non_finite=int(d["non_finite"]),
            mean=float(d["mean"]),
            m2=float(d["m2"]),
            min=None if d["min"] is None else float(d["min"]),
            max=None if d["max"] is None else float(d["max"]),
            sketch=QuantileSketch.from_dict(d["sketch"]),
            hll=HyperLogLog.from_text(d["hll"]),
            top={str(k): int(v) for k, v in d["top"].items()},
        )


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _top(counts: dict[str, int]) -> dict[str, int]:
    if len(counts) <= TOP_VALUES:
        return counts
    kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_VALUES]
    return dict(kept)


def _pick(fn: Any, a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return float(fn(a, b))
