"""Per-feature agreement of online and offline values (pure; Chronon's measures).

For each sampled entity and feature, with `online` the value the serving path returns
(None unless its status is PRESENT) and `offline` the value historical retrieval
computes at the same instant:

    match     both null, or both present and equal: same type (3 is not 3.0, True is
              not 1), floats bit for bit (NaN == NaN), dicts, lists and bytes by value
    mismatch  both present, different; or a value not of the feature's declared type
              (an int where a float is declared), on either side
    missing   offline has a value, online has none
    extra     online has a value, offline has none

Rates are over the entities compared. Exact equality is the bar: every path computes
through featureline.semantics, so "close" would hide a real skew, and a value of the
wrong type is a skew a model sees.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_EXAMPLES = 5


# Declared scalar dtype -> the Python type a value of it has on both paths. Other dtypes
# (timestamps, lists, maps, structs, JSON) are checked only for equality across sides.
_PY_TYPES: dict[str, type] = {
    "int32": int,
    "int64": int,
    "float32": float,
    "float64": float,
    "string": str,
    "bytes": bytes,
    "bool": bool,
}


def same_value(a: Any, b: Any) -> bool:
    """Exact equality of values and their types: 3 != 3.0 and True != 1; floats by
    their bits, except that every NaN is one value and 0.0 == -0.0 (both are the same
    sum); dicts (maps, structs, parsed JSON) by keys and values, lists and tuples
    (arrays) item by item, bytes-like by their bytes, all recursively."""
    if isinstance(a, bytes | bytearray | memoryview) and isinstance(b, bytes | bytearray | memoryview):
        return bytes(a) == bytes(b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        if a == 0.0 and b == 0.0:
            return True
        return struct.pack("<d", a) == struct.pack("<d", b)
    return bool(a == b)


def fits_dtype(value: Any, dtype: str | None) -> bool:
    """Whether a present value has the Python type of its declared scalar dtype
    (exactly: a bool is not an int64); True for dtypes without a scalar check."""
    want = _PY_TYPES.get(dtype or "")
    return want is None or type(value) is want


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
    dtype: str | None = None,
) -> FeatureAgreement:
    """Agreement of one feature over aligned rows (keys[i], online[i], offline[i]);
    with `dtype` (the feature's declared type) a present value of another type is a
    mismatch, even where both sides agree."""
    if not len(keys) == len(online) == len(offline):
        raise ValueError(
            f"{feature}: {len(keys)} keys, {len(online)} online and {len(offline)} offline values"
        )
    out = FeatureAgreement(feature)
    for key, on, off in zip(keys, online, offline, strict=True):
        out.compared += 1
        kind, label = _classify(on, off, dtype)
        if kind == "match":
            out.matches += 1
            continue
        setattr(out, kind, getattr(out, kind) + 1)
        if len(out.examples) < MAX_EXAMPLES:
            example = {"key": _plain(key), "kind": label, "online": on, "offline": off}
            if label.startswith("type mismatch"):
                example["types"] = f"online {type(on).__name__}, offline {type(off).__name__}"
            out.examples.append(example)
    return out


def _classify(online: Any, offline: Any, dtype: str | None) -> tuple[str, str]:
    """(counter, example label) of one pair."""
    on_null, off_null = _is_null(online), _is_null(offline)
    if on_null and off_null:
        return "match", "match"
    if not on_null and not off_null and not (fits_dtype(online, dtype) and fits_dtype(offline, dtype)):
        return "mismatches", f"type mismatch (declared {dtype})"
    if on_null:
        return "missing", "missing"
    if off_null:
        return "extra", "extra"
    if same_value(online, offline):
        return "match", "match"
    if type(online) is not type(offline):
        return "mismatches", "type mismatch"
    return "mismatches", "mismatch"


def _is_null(value: Any) -> bool:
    return value is None


def _plain(key: Any) -> Any:
    return list(key) if isinstance(key, tuple) else key
