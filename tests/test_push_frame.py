"""Pushed frames: per-type value checks, Feast's column names and times, and the offline
append (Hive directory and single file), atomic on failure. Pure logic and local files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featureline.errors import BadInputError, NotFoundError
from featureline.offline import TS_TYPE, dataset
from featureline.push import prepare, push
from featureline.push.frame import convert_column, event_time_us, view_rows
from featureline.push.offline import write_offline
from featureline.specs import FieldSpec, FileSourceSpec, RepoSpec, ViewSpec

T = datetime(2026, 3, 1, 17, 53, tzinfo=UTC)
T_US = 1772387580 * 1_000_000


def _view(path: str, mapping: dict[str, str] | None = None) -> ViewSpec:
    source = FileSourceSpec("src", path, "ts", "created", mapping or {})
    return ViewSpec(
        name="v", kind="batch", entities=("user",), join_keys=(FieldSpec("user_id", "int64"),),
        features=(FieldSpec("n", "int32"), FieldSpec("x", "float32"), FieldSpec("s", "string"),
                  FieldSpec("b", "bool"), FieldSpec("raw", "bytes"), FieldSpec("at", "unix_timestamp")),
        ttl_s=0, timestamp_field="ts", created_timestamp_column="created", batch_source=source,
        push_source="p",
    )  # fmt: skip


def _frame(**over: list[Any]) -> dict[str, list[Any]]:
    frame: dict[str, list[Any]] = {
        "user_id": [1, 2], "n": [3, None], "x": [0.5, 2], "s": ["a", None], "b": [True, False],
        "raw": ["AAE=", None], "at": [1_700_000_000, "2026-03-01T00:00:00Z"],
        "ts": ["2026-03-01T17:53:00", T.isoformat()], "created": [None, "2026-03-01 18:00:00+01:00"],
    }  # fmt: skip
    frame.update(over)
    return frame


def test_values_times_and_nulls() -> None:
    rows = view_rows(_view("/x.parquet"), _frame())
    assert rows.keys == {"user_id": [1, 2]}
    assert rows.features["n"] == [3, None] and rows.features["x"] == [0.5, 2.0]
    assert rows.features["raw"] == [b"\x00\x01", None]
    assert rows.features["at"] == [1_700_000_000, 1772323200]
    assert rows.event_us == [T_US, T_US]  # naive is UTC
    assert rows.created_us == [None, T_US - 53 * 60 * 1_000_000]  # 17:00 UTC
    assert event_time_us(T_US * 1000) == T_US  # a number is nanoseconds, as pd.to_datetime reads it
    assert convert_column("n", "int64", [3.0, float("nan")]) == [3, None]  # pandas' int-with-null
    assert convert_column("n", "int32", [np.int64(5)]) == [5]
    assert convert_column("x", "float32", [np.float32(0.5), np.nan]) == [0.5, None]


@pytest.mark.parametrize(
    ("column", "values", "named"),
    [
        ("n", [2**31, 1], "'n', row 0"),
        ("n", [1, 1.5], "'n', row 1"),
        ("x", ["1.0", 1], "'x', row 0"),
        ("b", [1, True], "'b', row 0"),
        ("s", [1, "a"], "'s', row 0"),
        ("raw", ["not base64!", None], "'raw', row 0"),
        ("user_id", [None, 1], "'user_id'"),
        ("user_id", [True, 1], "'user_id', row 0"),
        ("ts", [None, T.isoformat()], "'ts', row 0"),
        ("ts", ["soon", T.isoformat()], "'ts', row 0"),
        ("ts", [10**30, T.isoformat()], "'ts', row 0"),
        ("created", [{}, None], "'created', row 0"),
    ],
)
def test_bad_values_name_the_column(column: str, values: list[Any], named: str) -> None:
    with pytest.raises(BadInputError, match=named):
        view_rows(_view("/x.parquet"), _frame(**{column: values}))


def test_missing_columns_and_field_mapping() -> None:
    frame = _frame()
    del frame["ts"]
    with pytest.raises(BadInputError, match="no column 'ts'"):
        view_rows(_view("/x.parquet"), frame)
    frame = _frame()
    frame["uid"] = frame.pop("user_id")  # the source's column name (field_mapping)
    rows = view_rows(_view("/x.parquet", {"uid": "user_id"}), frame)
    assert rows.keys == {"user_id": [1, 2]} and "uid" in rows.columns
    with pytest.raises(BadInputError, match="no column 'uid'"):
        view_rows(_view("/x.parquet", {"uid": "user_id"}), _frame())


def test_unknown_push_source_and_bad_frames() -> None:
    repo = RepoSpec("p", {}, {"v": _view("/x.parquet")}, {}, {})
    with pytest.raises(NotFoundError, match="'nope'.*known push sources: p"):
        push(repo, None, "nope", _frame())
    for df, named in [([1], "'df'"), ({"user_id": 1}, "'user_id'"), ({"a": [1], "b": []}, "lengths")]:
        with pytest.raises(BadInputError, match=named):
            prepare([repo.view("v")], df)


def test_offline_hive_directory_append(tmp_path: Path) -> None:
    base = tmp_path / "v"
    view = _view(str(base))
    frame = _frame(ts=["2026-03-01T10:00:00", "2026-03-02T10:00:00"])
    written = write_offline(view_rows(view, frame), frame)
    assert sorted(p.parent.name for p in written) == ["date=2026-03-01", "date=2026-03-02"]
    table = dataset(base).to_table()
    assert table.num_rows == 2 and table.schema.field("ts").type == TS_TYPE
    assert table.schema.field("at").type == TS_TYPE  # unix_timestamp: seconds -> a timestamp
    assert sorted(table["user_id"].to_pylist()) == [1, 2]
    write_offline(view_rows(view, frame), frame)  # beside the first files, same schema
    assert dataset(base).to_table().num_rows == 4


def test_offline_single_file_keeps_its_schema_and_is_atomic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "src.parquet"
    view = _view(str(path))
    frame = _frame()
    write_offline(view_rows(view, frame), frame)
    stored = pq.read_table(path)
    assert stored.num_rows == 2
    with pytest.raises(BadInputError, match="'extra'"):
        write_offline(view_rows(view, {**frame, "extra": [1, 2]}), {**frame, "extra": [1, 2]})
    before = path.read_bytes()

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", fail)
    with pytest.raises(OSError, match="disk full"):
        write_offline(view_rows(view, frame), frame)
    assert path.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))
    monkeypatch.undo()
    write_offline(view_rows(view, frame), frame)
    assert pq.read_table(path).num_rows == 4 and pq.read_table(path).schema == stored.schema


def test_offline_hive_failure_leaves_no_partition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "v"
    view = _view(str(base))
    frame = _frame(ts=["2026-03-01T10:00:00", "2026-03-02T10:00:00"])
    calls = []
    real = pq.write_table

    def second_fails(table: pa.Table, where: Any, **kwargs: Any) -> None:
        calls.append(where)
        if len(calls) == 2:
            raise OSError("disk full")
        real(table, where, **kwargs)

    monkeypatch.setattr(pq, "write_table", second_fails)
    with pytest.raises(OSError):
        write_offline(view_rows(view, frame), frame)
    assert not list(base.rglob("*.parquet")) and not list(base.rglob(".*.tmp"))


def test_a_dead_redis_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    import redis

    from featureline.cli.devstack import free_ports
    from featureline.errors import ServiceUnavailableError

    repo = RepoSpec("p", {}, {"v": _view(str(tmp_path / "src.parquet"))}, {}, {})
    (port,) = free_ports(1)
    client = redis.Redis(port=port, socket_connect_timeout=1)
    with pytest.raises(ServiceUnavailableError, match="Redis"):
        push(repo, client, "p", _frame(), "online")


def test_arrays_maps_structs_and_json() -> None:
    assert convert_column("a", "int64_list", [[1, 2.0], np.array([3]), None]) == [[1, 2], [3], None]
    assert convert_column("a", "string_list", [["x", "y"], []]) == [["x", "y"], []]
    assert convert_column("a", "unix_timestamp_list", [[1_700_000_000, "2026-03-01T00:00:00Z"]]) == [
        [1_700_000_000, 1772323200]
    ]
    meta = {"vehicle_type": "truck", "rating": "5.0"}
    assert convert_column("m", "map", [meta, None]) == [meta, None]
    assert convert_column("m", "map", ['{"vehicle_type": "truck", "rating": "5.0"}']) == [meta]
    assert convert_column("p", "struct", [{"name": "d", "age": "30"}]) == [{"name": "d", "age": "30"}]
    assert convert_column("j", "json", ['{"a": [1]}', {"b": 2}, [1, "x"]]) == [
        '{"a": [1]}',
        '{"b": 2}',
        '[1, "x"]',
    ]


@pytest.mark.parametrize(
    ("dtype", "value"),
    [
        ("int64_list", [1, None]),  # Feast's arrays hold no nulls
        ("int64_list", [1, "2"]),
        ("float64_list", "1.0"),
        ("map", ["k", "v"]),
        ("map", {1: "v"}),
        ("map", {"k": object()}),  # a value Feast cannot store
        ("struct", "text"),
        ("struct", "[1, 2]"),  # JSON text, but not an object
        ("json", "{not json"),
        ("json", {"k": object()}),
    ],
)
def test_bad_compound_values_name_the_column(dtype: str, value: Any) -> None:
    with pytest.raises(BadInputError, match=f"column 'c', row 0: .* is not a valid {dtype} value"):
        convert_column("c", dtype, [value])
