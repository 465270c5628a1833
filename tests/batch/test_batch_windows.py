"""Tiles and window values from raw events, against a naive oracle, exactly."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from batch_events import ORIGIN_US
from oracle.naive import US, aggregate, in_window, same, to_us

from featureline.aggregations import AggState
from featureline.batch.backfill.events import EventColumns, dedupe_events, read_raw_events, with_times
from featureline.batch.backfill.windows import window_values
from featureline.offline import TS_TYPE
from featureline.offline_layout import STATE, TILE_START_S
from featureline.offline_tiles import tile_states
from featureline.online.tiles import decode_tile, encode_tile, tile_parts
from featureline.semantics import tile_start_us
from featureline.specs import AggregationSpec, FieldSpec, RepoSpec, ViewSpec


def _events(table: pa.Table, view: ViewSpec) -> pa.Table:
    return dedupe_events(with_times(table, EventColumns.of(view)))


def _naive_rows(table: pa.Table) -> list[dict[str, Any]]:
    """One row per Kafka identity, the first stored copy (smallest created)."""
    seen: dict[tuple[int, int], dict[str, Any]] = {}
    for row in sorted(table.to_pylist(), key=lambda r: r["created"]):
        seen.setdefault((row["kafka_partition"], row["kafka_offset"]), row)
    return list(seen.values())


_us = to_us


def _with_var(view: ViewSpec) -> ViewSpec:
    """The demo view plus var/std aggregations of its amount column (the demo repo has
    none), so that the backfill's rows and tiles are checked for them too."""
    column = "amount" if "amount" in {f.name for f in view.input_fields} else view.aggregations[0].column
    extra = tuple(
        AggregationSpec(column, fn, window_s, slide_s, f"{fn}_{column}_{window_s}")
        for fn, window_s, slide_s in (("var", 600, 0), ("stddev", 3600, 0), ("std", 86400, 3600))
    )
    return dataclasses.replace(
        view,
        aggregations=view.aggregations + extra,
        features=view.features + tuple(FieldSpec(a.name, "float64") for a in extra),
    )


@pytest.mark.parametrize("view_name", ["user_txn_stats", "merchant_txn_stats"])
def test_window_values_match_naive_oracle(
    demo_spec: RepoSpec, small_events: pa.Table, view_name: str
) -> None:
    view = _with_var(demo_spec.view(view_name))
    key = view.join_key_names[0]
    out_start, out_end = ORIGIN_US + 3600 * US, ORIGIN_US + 40 * 3600 * US
    got = window_values(_events(small_events, view), view, out_start, out_end).to_pylist()
    rows = _naive_rows(small_events)
    expected_events = [r for r in rows if out_start <= _us(r["event_timestamp"]) < out_end]
    assert len(got) == len(expected_events) > 100
    by_identity = {(r["kafka_partition"], r["kafka_offset"]): r for r in got}
    for ev in expected_events:
        t = _us(ev["event_timestamp"])
        mine = [r for r in rows if r[key] == ev[key]]
        out = by_identity[(ev["kafka_partition"], ev["kafka_offset"])]
        for agg in view.aggregations:
            values = [
                r[agg.column]
                for r in mine
                if in_window(_us(r["event_timestamp"]), t, agg.window_s, agg.slide_s)
            ]
            want = aggregate(values, agg.function)
            assert same(out[agg.name], want), (agg.name, ev, out[agg.name], want)


def test_tile_states_match_naive_oracle(demo_spec: RepoSpec, small_events: pa.Table) -> None:
    view = _with_var(demo_spec.view("user_txn_stats"))
    rows = _naive_rows(small_events)
    for tile_s in view.tile_sizes_s():
        got = tile_states(_events(small_events, view), view, tile_s).to_pylist()
        columns = tile_parts(view, tile_s)
        expected: dict[tuple[int, int, int], dict[str, AggState]] = {}
        for r in sorted(rows, key=lambda r: (_us(r["event_timestamp"]), r["kafka_offset"])):
            start_s = tile_start_us(_us(r["event_timestamp"]), tile_s) // US
            states = expected.setdefault(
                (r["user_id"], start_s, r["kafka_partition"]), {c: AggState() for c in columns}
            )
            for col, parts in columns.items():
                states[col].add(r[col], parts=parts)
        assert len(got) == len(expected)
        for g in got:
            want = expected[(g["user_id"], g[TILE_START_S], g["kafka_partition"])]
            assert decode_tile(g[STATE]) == want
            # byte-identical to what an online writer encodes for the same events
            assert g[STATE] == encode_tile(want)


def test_read_raw_events_applies_field_mapping(tmp_path: Path) -> None:
    """Feast's field_mapping (file column -> feature name) and the range filter."""
    stamps = pa.array([ORIGIN_US, ORIGIN_US + US, ORIGIN_US + 2 * US]).cast(TS_TYPE)
    pq.write_table(
        pa.table({"uid": [1, 2, 3], "amt": [1.5, None, 3.0], "ts": stamps, "kafka_offset": [0, 1, 1],
                  "kafka_partition": [0, 0, 0], "created": stamps}),
        tmp_path / "f.parquet",
    )  # fmt: skip
    cols = EventColumns(("user_id",), "ts", "created", ("amount",), (("amt", "amount"), ("uid", "user_id")))
    got = read_raw_events(tmp_path / "f.parquet", cols, ORIGIN_US, ORIGIN_US + 2 * US)
    assert got.select(["user_id", "amount"]).to_pylist() == [
        {"user_id": 1, "amount": 1.5}, {"user_id": 2, "amount": None},
    ]  # fmt: skip


def test_read_raw_events_of_an_empty_range(
    demo_spec: RepoSpec, small_events: pa.Table, tmp_path: Path
) -> None:
    """A range with no date partition (start >= end) reads nothing, with typed columns."""
    from batch_events import write_raw

    base = write_raw(small_events, tmp_path)
    cols = EventColumns.of(demo_spec.view("user_txn_stats"))
    got = read_raw_events(base, cols, ORIGIN_US + 10 * US, ORIGIN_US)
    assert got.num_rows == 0 and got.schema.field("amount").type == pa.float64()
    assert read_raw_events(base, cols, None, None).num_rows == 600
