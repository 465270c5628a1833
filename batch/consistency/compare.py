"""Per-feature agreement of online and offline values (pure; Chronon's measures).

For each sampled entity and feature, with `online` the value the serving path returns
(None unless its status is PRESENT) and `offline` the value historical retrieval
computes at the same instant:

    match     both null, or both present and equal (floats bit for bit; NaN == NaN)
    mismatch  both present, different
    missing   offline has a value, online has none
    extra     online has a value, offline has none

Rates are over the entities compared. Exact equality is the bar: every path computes
through featureline.semantics, so "close" would hide a real skew.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_EXAMPLES = 5


def same_value(a: Any, b: Any) -> bool:
    """Exact equality; floats compare by their bits, except that every NaN is one
    value and 0.0 == -0.0 (both are the same sum)."""
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, int | float) or not isinstance(b, int | float):
            return False
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        if fa == 0.0 and fb == 0.0:
            return True
        return struct.pack("<d", fa) == struct.pack("<d", fb)
    return bool(a == b)


@dataclass
class FeatureAgreement:
    feature: str  # "view:feature"
    compared: int = 0
    matches: int = 0
    mismatches: int = 0
    missing: int = 0
    extra: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def rate(self, count: int) -> float:
        return count / self.compared if self.compared else 0.0

    @property
    def mismatch_rate(self) -> float:
        return self.rate(self.mismatches)

    @property
    def missing_rate(self) -> float:
        return self.rate(self.missing)

    @property
    def extra_rate(self) -> float:
        return self.rate(self.extra)

    @property
    def ok(self) -> bool:
        return self.mismatches == self.missing == self.extra == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "compared": self.compared,
            "matches": self.matches,
            "mismatches": self.mismatches,
            "missing": self.missing,
            "extra": self.extra,
            "mismatch_rate": self.mismatch_rate,
            "missing_rate": self.missing_rate,
            "extra_rate": self.extra_rate,
            "examples": self.examples,
        }


def compare_feature(
    feature: str,
    keys: Sequence[Any],
    online: Sequence[Any],
    offline: Sequence[Any],
) -> FeatureAgreement:
    """Agreement of one feature over aligned rows (keys[i], online[i], offline[i])."""
    if not len(keys) == len(online) == len(offline):
        raise ValueError(
            f"{feature}: {len(keys)} keys, {len(online)} online and {len(offline)} offline values"
        )
    out = FeatureAgreement(feature)
    for key, on, off in zip(keys, online, offline, strict=True):
        out.compared += 1
        kind = _classify(on, off)
        if kind == "match":
            out.matches += 1
            continue
        setattr(out, kind, getattr(out, kind) + 1)
        if len(out.examples) < MAX_EXAMPLES:
            label = "mismatch" if kind == "mismatches" else kind
            out.examples.append({"key": _plain(key), "kind": label, "online": on, "offline": off})
    return out


def _classify(online: Any, offline: Any) -> str:
    on_null, off_null = _is_null(online), _is_null(offline)
    if on_null and off_null:
        return "match"
    if on_null:
        return "missing"
    if off_null:
        return "extra"
    return "match" if same_value(online, offline) else "mismatches"


def _is_null(value: Any) -> bool:
    return value is None


def _plain(key: Any) -> Any:
    return list(key) if isinstance(key, tuple) else key
