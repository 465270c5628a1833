"""What one online read produces: columns of values, statuses and event times.

A column read from Redis keeps the stored Feast ValueProto bytes (`raw`) and decodes
them only when asked (`values`): the gRPC response embeds the stored bytes as they
are, the tensor call decodes whole columns with numpy, and only REST needs Python
objects. Statuses are Feast's FieldStatus numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from featureline.dtypes import COMPOUND_DTYPES
from featureline.online.feast_format import decode_value
from featureline.online.value_proto import decode_plain
from featureline.serving_api.memo import memoized

# feast.serving.FieldStatus numbers (also featureline.serving.v1.FieldStatus).
INVALID: Final = 0
PRESENT: Final = 1
NULL_VALUE: Final = 2
NOT_FOUND: Final = 3
OUTSIDE_MAX_AGE: Final = 4
STATUS_NAMES: Final = ("INVALID", "PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE")


# Decoded values by their stored bytes: a hot entity's values recur across requests
# (~0.1 us for a hit against ~1 us to decode). decode_value gives immutable scalars only.
_DECODED: Final[dict[bytes, Any]] = {}
_DECODED_CAP: Final = 200_000


def _decoded(raw: bytes) -> Any:
    return memoized(_DECODED, _DECODED_CAP, raw, decode_value)


# init=False and an explicit __init__ on the classes of every request: mypyc compiles
# a written __init__, while a dataclass's generated one stays interpreted Python
# (~1 us a call, 8 columns a batch-1 request).
@dataclass(init=False)
class FrameColumn:
    """One output column over the request's rows."""

    name: str
    dtype: str
    statuses: list[int]
    event_us: list[int]  # 0 where the value has no event time (keys, on-demand, missing)
    raw: list[bytes | None] | None = None  # stored ValueProto bytes; None where not PRESENT
    _values: list[Any] | None = None
    view: str = ""  # the latest-value view a Redis-read column comes from

    def __init__(self, name: str, dtype: str, statuses: list[int], event_us: list[int],
                 raw: list[bytes | None] | None = None, _values: list[Any] | None = None,
                 view: str = "") -> None:  # fmt: skip
        self.name = name
        self.dtype = dtype
        self.statuses = statuses
        self.event_us = event_us
        self.raw = raw
        self._values = _values
        self.view = view

    @property
    def values(self) -> list[Any]:
        if self._values is None:
            raw: list[bytes | None] = self.raw if self.raw is not None else []
            if self.dtype in COMPOUND_DTYPES:
                # Lists and dicts are mutable: decoded per request, never shared.
                self._values = [decode_plain(r) if r else None for r in raw]
            else:
                self._values = [
                    (v if (v := _DECODED.get(r)) is not None else _decoded(r)) if r else None for r in raw
                ]
        return self._values

    def undecoded(self) -> list[bytes | None] | None:
        """The stored bytes of a scalar column whose values were not decoded yet (an
        encoder may go from bytes to its own form directly), else None."""
        if self._values is None and self.raw is not None and self.dtype not in COMPOUND_DTYPES:
            return self.raw
        return None

    @classmethod
    def from_values(
        cls, name: str, dtype: str, values: list[Any], event_us: list[int] | None = None
    ) -> FrameColumn:
        statuses = [NULL_VALUE if v is None else PRESENT for v in values]
        return cls(name, dtype, statuses, event_us or [0] * len(values), _values=values)


@dataclass(init=False)
class FeatureFrame:
    """Join-key columns (echoed) then feature columns, as Feast orders its response."""

    n_rows: int
    t_us: int  # the serving time every value is "as of"
    key_columns: list[FrameColumn] = field(default_factory=list)
    columns: list[FrameColumn] = field(default_factory=list)

    def __init__(self, n_rows: int, t_us: int, key_columns: list[FrameColumn] | None = None,
                 columns: list[FrameColumn] | None = None) -> None:  # fmt: skip
        self.n_rows = n_rows
        self.t_us = t_us
        self.key_columns = key_columns if key_columns is not None else []
        self.columns = columns if columns is not None else []

    @property
    def all_columns(self) -> list[FrameColumn]:
        return self.key_columns + self.columns

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.all_columns]
