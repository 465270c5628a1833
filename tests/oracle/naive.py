"""A naive reference for the value rules of shared/semantics.md, written from that
document and not from the code it checks.

Deliberately slow and plain: every answer is a loop over a list of events, sums are
exact `Fraction`s rounded once, and no production module is imported (a test in
test_naive.py enforces that), so a wrong rule in featureline cannot hide here too.

Conventions (all from semantics.md unless marked "choice"):
- Instants are integer microseconds since the Unix epoch in UTC; `to_us` converts a
  datetime in any zone, and reads a naive one as UTC.
- Null is `None`. Choice: a float NaN is also read as null, the way pandas and Arrow
  writers mark a missing float (semantics.md only says "non-null values").
- Choice: a row with no created timestamp loses a tie on event time to any row that
  has one (semantics.md orders ties by created time and says nothing of a missing one).
  Two different rows tied on both event and created time have no defined winner:
  `latest_row` raises `AmbiguousTie`, so generated data must avoid them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

US = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

FUNCTIONS = ("count", "sum", "mean", "min", "max", "count_distinct", "var", "variance", "std", "stddev")


class AmbiguousTie(ValueError):
    """Two different rows share the largest (event time, created time)."""


def to_us(value: datetime | int) -> int:
    """An instant as UTC microseconds; a naive datetime is UTC (semantics.md preamble)."""
    if isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# --- windows (semantics.md 2) ---------------------------------------------------------


def tile_size_s(window_s: int, slide_s: int | None) -> int:
    """The slide interval when it is set and smaller than w; else 5 minutes for
    w < 12 h, 1 hour for w < 12 days, else 1 day."""
    if slide_s is not None and 0 < slide_s < window_s:
        return slide_s
    if window_s < 12 * 60 * 60:
        return 5 * 60
    if window_s < 12 * 24 * 60 * 60:
        return 60 * 60
    return 24 * 60 * 60


def tile_start_us(ts_us: int, tile_s: int) -> int:
    """The epoch-aligned tile holding instant ts: floor(ts / s) * s."""
    return math.floor(Fraction(ts_us, tile_s * US)) * tile_s * US


def window_start_us(t_us: int, window_s: int, slide_s: int | None) -> int:
    """start(t) = floor((t - w) / s) * s, epoch-aligned, s the tile size.

    Written with Fraction and math.floor (not //) so that it reads as the formula."""
    s = tile_size_s(window_s, slide_s) * US
    return math.floor(Fraction(t_us - window_s * US, s)) * s


def in_window(event_us: int, t_us: int, window_s: int, slide_s: int | None) -> bool:
    return window_start_us(t_us, window_s, slide_s) <= event_us <= t_us


# --- aggregation functions (semantics.md 2, table) ------------------------------------


def _exact(values: list[Any]) -> list[Fraction]:
    return [Fraction(v) for v in values]


def _variance(values: list[Any]) -> float | None:
    n = len(values)
    if n < 2:
        return None
    xs = _exact(values)
    total = sum(xs, Fraction(0))
    squares = sum((x * x for x in xs), Fraction(0))
    return float((squares - total * total / n) / (n - 1))  # exact, rounded once


def aggregate(values: Iterable[Any], function: str) -> Any:
    """The value of `function` over these values (the events of one window), with the
    table's empty-window values. Nulls (and NaN) are skipped first."""
    present = [v for v in values if not is_null(v)]
    if function == "count":
        return len(present)
    if function == "sum":
        return float(sum(_exact(present), Fraction(0)))
    if function == "mean":
        return None if not present else float(sum(_exact(present), Fraction(0)) / len(present))
    if function == "min":
        return None if not present else min(present)
    if function == "max":
        return None if not present else max(present)
    if function == "count_distinct":
        return len(set(present))
    if function in ("var", "variance"):
        return _variance(present)
    if function in ("std", "stddev"):
        var = _variance(present)
        return None if var is None else math.sqrt(var)
    raise ValueError(f"unknown aggregation function {function!r}")


def empty_value(function: str) -> Any:
    return aggregate([], function)


# --- latest value (semantics.md 1) ----------------------------------------------------


def within_ttl(event_us: int, t_us: int, ttl_s: int) -> bool:
    """t - ttl <= event_ts <= t; ttl == 0 means no lower bound."""
    if event_us > t_us:
        return False
    return ttl_s == 0 or t_us - ttl_s * US <= event_us


def _newer(a: tuple[int, int | None], b: tuple[int, int | None]) -> bool | None:
    """Whether (event, created) a beats b; None for a full tie."""
    if a[0] != b[0]:
        return a[0] > b[0]
    ca, cb = a[1], b[1]
    if ca == cb:
        return None
    if ca is None or cb is None:
        return cb is None  # a missing created time loses (choice, see module doc)
    return ca > cb


@dataclass
class Event:
    """One source row: its key values, event and created instants, and columns."""

    keys: tuple[Any, ...]
    event_us: int
    created_us: int | None
    values: dict[str, Any] = field(default_factory=dict)


def latest_row(events: Sequence[Event], key: tuple[Any, ...], t_us: int, ttl_s: int) -> Event | None:
    """The winning row for key at t: in [t - ttl, t], largest event time, then largest
    created time. The whole row wins (its nulls included)."""
    best: Event | None = None
    for e in events:
        if any(is_null(k) for k in e.keys) or e.keys != key:
            continue
        if not within_ttl(e.event_us, t_us, ttl_s):
            continue
        if best is None:
            best = e
            continue
        newer = _newer((e.event_us, e.created_us), (best.event_us, best.created_us))
        if newer is None and e.values != best.values:
            raise AmbiguousTie(f"key {key}: two rows at event {e.event_us}, created {e.created_us}")
        if newer:
            best = e
    return best


def window_value(
    events: Sequence[Event],
    key: tuple[Any, ...],
    t_us: int,
    column: str,
    function: str,
    window_s: int,
    slide_s: int | None,
) -> Any:
    """One aggregation for key at t, over the events in [start(t), t]."""
    values = [
        e.values.get(column)
        for e in events
        if e.keys == key
        and not any(is_null(k) for k in e.keys)
        and in_window(e.event_us, t_us, window_s, slide_s)
    ]
    return aggregate(values, function)


# --- point-in-time join (semantics.md 1 and 2, offline) -------------------------------


@dataclass
class Agg:
    name: str
    column: str
    function: str
    window_s: int
    slide_s: int | None = None


@dataclass
class PlainView:
    """A latest-value view: `features` are taken from the winning row."""

    join_keys: tuple[str, ...]
    features: tuple[str, ...]
    ttl_s: int
    events: list[Event]


@dataclass
class AggView:
    join_keys: tuple[str, ...]
    aggregations: tuple[Agg, ...]
    events: list[Event]


def view_values(view: PlainView | AggView, request: dict[str, Any], t_us: int) -> dict[str, Any]:
    key = tuple(request.get(k) for k in view.join_keys)
    if isinstance(view, AggView):
        return {
            a.name: window_value(view.events, key, t_us, a.column, a.function, a.window_s, a.slide_s)
            for a in view.aggregations
        }
    row = None if any(is_null(k) for k in key) else latest_row(view.events, key, t_us, view.ttl_s)
    return {f: (None if row is None else row.values.get(f)) for f in view.features}


def point_in_time_join(
    requests: Sequence[dict[str, Any]], t_column: str, views: Sequence[PlainView | AggView]
) -> list[dict[str, Any]]:
    """One output row per input row, in input order, every input column kept, then each
    view's features (offline: t is the request row's own timestamp)."""
    out = []
    for request in requests:
        row = dict(request)
        t_us = to_us(request[t_column])
        for view in views:
            row.update(view_values(view, request, t_us))
        out.append(row)
    return out


def same(a: Any, b: Any) -> bool:
    """Equal values of the same type; floats to the last bit (NaN equals NaN)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a.hex() == b.hex()
    return type(a) is type(b) and a == b
