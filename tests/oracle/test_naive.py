"""The naive oracle against values worked out by hand from shared/semantics.md."""

from __future__ import annotations

import ast
import math
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from oracle import naive
from oracle.naive import US, Agg, AggView, AmbiguousTie, Event, PlainView

T = 1_700_000_100 * US  # a multiple of 300 s: 2023-11-14 22:15:00 UTC


def test_imports_no_production_module() -> None:
    tree = ast.parse(Path(naive.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_to_us_reads_any_zone_as_the_same_instant_and_naive_as_utc() -> None:
    utc = datetime(2024, 3, 1, 12, 0, 0, 5, tzinfo=UTC)
    kolkata = utc.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert naive.to_us(utc) == naive.to_us(kolkata) == naive.to_us(utc.replace(tzinfo=None))
    assert naive.to_us(utc) == 1_709_294_400_000_005
    assert naive.to_us(datetime(1969, 12, 31, 23, 59, 59, 999_999)) == -1


@pytest.mark.parametrize(
    ("window_s", "slide_s", "tile_s"),
    [
        (600, 600, 300),  # Feast's default slide == window: default resolution, 5 min
        (600, None, 300),
        (600, 0, 300),
        (43_199, None, 300),  # just under 12 h
        (43_200, None, 3600),  # 12 h is not under 12 h
        (1_036_799, None, 3600),  # just under 12 days
        (1_036_800, None, 86_400),
        (3600, 60, 60),  # a slide smaller than the window is the tile
        (3600, 7200, 300),  # a slide not smaller than the window is not
    ],
)
def test_tile_size(window_s: int, slide_s: int | None, tile_s: int) -> None:
    assert naive.tile_size_s(window_s, slide_s) == tile_s


def test_window_start_by_hand() -> None:
    # w = 600 s, s = 300 s. t = T + 123 s: t - w = T - 477 s, floored to 300 s: T - 600 s.
    assert naive.window_start_us(T + 123 * US, 600, None) == T - 600 * US
    # t - w exactly on a tile edge: start = t - w.
    assert naive.window_start_us(T + 600 * US, 600, None) == T
    # 1 us before that edge floors one tile down.
    assert naive.window_start_us(T + 600 * US - 1, 600, None) == T - 300 * US
    # before 1970, floor goes down, not towards zero: -600 s - 1 us -> -900 s.
    assert naive.window_start_us(-1, 600, None) == -900 * US
    # w = 1 h, slide 60 s: t = T + 59.5 s, t - w = T - 3540.5 s -> T - 3600 s.
    assert naive.window_start_us(T + 59_500_000, 3600, 60) == T - 3600 * US


def test_tile_start() -> None:
    assert naive.tile_start_us(T + 299 * US, 300) == T
    assert naive.tile_start_us(T, 300) == T
    assert naive.tile_start_us(T - 1, 300) == T - 300 * US
    assert naive.tile_start_us(-1, 60) == -60 * US


def test_in_window_bounds() -> None:
    t = T + 123 * US
    start = T - 600 * US
    assert naive.in_window(start, t, 600, None)
    assert not naive.in_window(start - 1, t, 600, None)
    assert naive.in_window(t, t, 600, None)
    assert not naive.in_window(t + 1, t, 600, None)


def test_aggregates_by_hand() -> None:
    vals = [2.0, None, 4.0, float("nan"), 4.0, 9.0]
    assert naive.aggregate(vals, "count") == 4
    assert naive.aggregate(vals, "sum") == 19.0
    assert naive.aggregate(vals, "mean") == 4.75
    assert naive.aggregate(vals, "min") == 2.0
    assert naive.aggregate(vals, "max") == 9.0
    assert naive.aggregate(vals, "count_distinct") == 3
    # x = 2, 4, 4, 9: mean 4.75; squared deviations 7.5625 + 0.5625 + 0.5625 + 18.0625 = 26.75
    # sample variance 26.75 / 3
    assert naive.aggregate(vals, "var") == naive.aggregate(vals, "variance") == 26.75 / 3
    assert naive.aggregate(vals, "std") == naive.aggregate(vals, "stddev") == math.sqrt(26.75 / 3)
    assert naive.aggregate(["b", "a", None, "b"], "max") == "b"
    assert naive.aggregate(["b", "a", None, "b"], "count_distinct") == 2


def test_sums_are_exact_and_rounded_once() -> None:
    # Left-to-right float addition gives 0.0 here (1e16 + 1.0 rounds back to 1e16).
    vals = [1e16, 1.0, -1e16]
    assert naive.aggregate(vals, "sum") == 1.0
    assert naive.aggregate(vals, "mean") == 1.0 / 3
    # 0.1 + 0.2 + 0.3 in floats is 0.6000000000000001; the exact sum rounds to 0.6.
    assert naive.aggregate([0.1, 0.2, 0.3], "sum") == 0.6
    assert naive.aggregate([0.1, 0.2, 0.3], "mean") == 0.2
    # Variance where the textbook float formula cancels to 0: 1e9 + {0, 1, 2} -> 1.0.
    assert naive.aggregate([1e9, 1e9 + 1, 1e9 + 2], "var") == 1.0
    assert naive.aggregate([3, 4], "sum") == 7.0 and isinstance(naive.aggregate([3, 4], "sum"), float)


@pytest.mark.parametrize(
    ("function", "empty", "one"),
    [
        ("count", 0, 1),
        ("sum", 0.0, 5.0),
        ("mean", None, 5.0),
        ("min", None, 5.0),
        ("max", None, 5.0),
        ("count_distinct", 0, 1),
        ("var", None, None),  # n < 2
        ("variance", None, None),
        ("std", None, None),
        ("stddev", None, None),
    ],
)
def test_empty_and_single_value_windows(function: str, empty: object, one: object) -> None:
    assert naive.empty_value(function) == empty
    assert naive.aggregate([None, float("nan")], function) == empty
    assert naive.aggregate([5.0, None], function) == one
    assert type(naive.aggregate([5.0, None], function)) is type(one)


def _ev(ts: int, created: int | None, **values: object) -> Event:
    return Event(("u1",), ts, created, dict(values))


def test_within_ttl_bounds() -> None:
    assert naive.within_ttl(T - 3600 * US, T, 3600)  # exactly t - ttl
    assert not naive.within_ttl(T - 3600 * US - 1, T, 3600)
    assert naive.within_ttl(T, T, 3600)
    assert not naive.within_ttl(T + 1, T, 3600)
    assert naive.within_ttl(T - 10**12, T, 0)  # ttl 0: no lower bound
    assert not naive.within_ttl(T + 1, T, 0)


def test_latest_takes_the_newest_row_whole_with_ties_on_created_time() -> None:
    events = [
        _ev(T - 50, 1, score=1.0),
        _ev(T - 10, 7, score=2.0),
        _ev(T - 10, 9, score=3.0),  # same event time, newer created: wins
        _ev(T - 10, None, score=4.0),  # no created time: loses the tie
        _ev(T + 1, 100, score=5.0),  # future
        Event(("u2",), T, 1, {"score": 6.0}),
    ]
    assert naive.latest_row(events, ("u1",), T, 0).values == {"score": 3.0}
    # a newer row whose value is null wins whole: no fall-back to an older value
    events.append(_ev(T - 5, 1, score=None))
    assert naive.latest_row(events, ("u1",), T, 0).values == {"score": None}
    # ttl 1 s: a row exactly at T - 1 s counts, one 1 us older does not
    edge = [_ev(T - US, 1, score=1.0), _ev(T - US - 1, 2, score=2.0)]
    assert naive.latest_row(edge, ("u1",), T, 1).values == {"score": 1.0}
    assert naive.latest_row(edge[1:], ("u1",), T, 1) is None
    assert naive.latest_row(events, ("nobody",), T, 0) is None


def test_a_full_tie_between_different_rows_is_refused() -> None:
    with pytest.raises(AmbiguousTie):
        naive.latest_row([_ev(T, 1, score=1.0), _ev(T, 1, score=2.0)], ("u1",), T, 0)
    # identical duplicates are no ambiguity
    assert naive.latest_row([_ev(T, 1, score=1.0), _ev(T, 1, score=1.0)], ("u1",), T, 0) is not None


def test_point_in_time_join_keeps_every_row_in_order() -> None:
    profile = PlainView(
        ("user_id",),
        ("score", "tier"),
        3600,
        [
            Event((1,), T - 3600 * US, 1, {"score": 1.5, "tier": "a"}),
            Event((1,), T + 10 * US, 1, {"score": 2.5, "tier": None}),
            Event((None,), T, 1, {"score": 9.0, "tier": "z"}),  # a null key never matches
        ],
    )
    stats = AggView(
        ("user_id",),
        (
            Agg("n_10m", "amount", "count", 600),
            Agg("sum_10m", "amount", "sum", 600),
            Agg("mean_10m", "amount", "mean", 600),
            Agg("var_10m", "amount", "var", 600),
        ),
        [
            Event((1,), T - 600 * US, 1, {"amount": 1.0}),  # exactly start(T)
            Event((1,), T - 600 * US - 1, 1, {"amount": 100.0}),  # 1 us before it
            Event((1,), T, 1, {"amount": 3.0}),  # exactly t
            Event((1,), T + 10 * US, 1, {"amount": 1000.0}),  # after t (T) but in for T + 10 us
        ],
    )
    naive_t = datetime.fromtimestamp(T // US, UTC).replace(tzinfo=None)
    requests = [
        {"user_id": 1, "ts": naive_t, "x": "a"},
        {"user_id": 2, "ts": naive_t, "x": "b"},
        {"user_id": None, "ts": naive_t, "x": "c"},
        {"user_id": 1, "ts": T + 10 * US, "x": "d"},
        {"user_id": 1, "ts": naive_t, "x": "a"},  # duplicated input row
    ]
    got = naive.point_in_time_join(requests, "ts", [profile, stats])
    empty = {"score": None, "tier": None, "n_10m": 0, "sum_10m": 0.0, "mean_10m": None, "var_10m": None}
    assert got == [
        {
            **requests[0],
            "score": 1.5,
            "tier": "a",
            "n_10m": 2,
            "sum_10m": 4.0,
            "mean_10m": 2.0,
            "var_10m": 2.0,
        },
        {**requests[1], **empty},
        {**requests[2], **empty},
        # t = T + 10 us: start is still T - 600 s; the row at T + 10 us wins with its null tier
        {
            **requests[3],
            "score": 2.5,
            "tier": None,
            "n_10m": 3,
            "sum_10m": 1004.0,
            "mean_10m": 1004.0 / 3,
            "var_10m": 1_992_014 / 6,
        },  # (3 * 1000010 - 1004**2) / (3 * 2)
        {
            **requests[4],
            "score": 1.5,
            "tier": "a",
            "n_10m": 2,
            "sum_10m": 4.0,
            "mean_10m": 2.0,
            "var_10m": 2.0,
        },
    ]
    assert list(got[0]) == ["user_id", "ts", "x", "score", "tier", "n_10m", "sum_10m", "mean_10m", "var_10m"]


def test_same_sees_types_and_bits() -> None:
    assert naive.same(1.0, 1.0) and naive.same(float("nan"), float("nan"))
    assert not naive.same(3, 3.0)
    assert not naive.same(0.0, -0.0)
    assert not naive.same(0.1 + 0.2, 0.3)
