"""The consistency measures on plain values, and the report's table and page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from featureline.cli.consistency import (
    ConsistencyReport,
    compare_feature,
    format_table,
    same_value,
    write_report,
)


def test_same_value_is_exact() -> None:
    assert same_value(0.1 + 0.2, 0.30000000000000004)
    assert not same_value(0.1 + 0.2, 0.3)  # one ulp apart is a mismatch
    assert same_value(float("nan"), float("nan")) and same_value(-0.0, 0.0)
    assert not same_value(float("nan"), 1.0) and not same_value(1.0, float("nan"))
    assert not same_value("3", 3) and same_value("FR", "FR") and not same_value("FR", "fr")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (3, 3.0),  # an int where the other side has a float
        (3.0, 3),
        (True, 1),  # a bool is not an int
        (0, False),
        (1.0, True),
        ("1", 1),
        (b"ab", "ab"),
        ([1, 2], [1.0, 2.0]),  # arrays item by item, with types
        ({"a": 1}, {"a": 1.0}),  # maps and structs by value, with types
        (None, 0),
    ],
)
def test_same_value_sees_types(a: object, b: object) -> None:
    assert not same_value(a, b) and not same_value(b, a)


def test_same_value_compares_complex_values_by_value() -> None:
    assert same_value({"a": [1, {"b": b"x"}], "c": None}, {"a": [1, {"b": b"x"}], "c": None})
    assert not same_value({"a": 1}, {"a": 1, "b": 2})  # a key more
    assert not same_value({"a": 1}, {"b": 1})
    assert not same_value({"a": [1, 2]}, {"a": [2, 1]})  # order of an array counts
    assert not same_value([1, 2], [1, 2, 3])
    assert same_value([0.1, float("nan")], (0.1, float("nan")))  # list vs tuple: one array type
    assert not same_value([0.1 + 0.2], [0.3])  # floats inside by their bits
    assert same_value(b"\x00\xff", bytearray(b"\x00\xff")) and not same_value(b"\x00", b"\x01")
    assert same_value({"k": {"n": 2**70}}, {"k": {"n": 2**70}})  # parsed JSON's big ints


@pytest.mark.parametrize(
    ("dtype", "online", "offline", "kind"),
    [
        ("float64", 3, 3.0, "type mismatch (declared float64)"),  # int where float is declared
        ("float64", 3, 3, "type mismatch (declared float64)"),  # both sides wrong alike
        ("int64", 3.0, 3.0, "type mismatch (declared int64)"),
        ("int64", True, True, "type mismatch (declared int64)"),
        ("bool", 1, 1, "type mismatch (declared bool)"),
        ("string", b"FR", b"FR", "type mismatch (declared string)"),
        ("bytes", "ab", "ab", "type mismatch (declared bytes)"),
        ("float64", 1.5, 2.5, "mismatch"),
        ("float64", 0.30000000000000004, 0.3, "mismatch"),
        ("string", "FR", "fr", "mismatch"),
        ("float64", None, 1.5, "missing"),
        ("float64", 1.5, None, "extra"),
        (None, 3, 3.0, "type mismatch"),  # no declared type: still the two sides' types
        ("map", {"a": 1}, {"a": 2}, "mismatch"),
        ("array<int64>", [1, 2], [1, 2, 3], "mismatch"),
        ("json", {"a": [1]}, {"a": [1.0]}, "mismatch"),  # a type inside a value
    ],
)
def test_compare_feature_reports_each_hand_made_mismatch(
    dtype: str | None, online: object, offline: object, kind: str
) -> None:
    got = compare_feature("v:f", [7], [online], [offline], dtype)
    assert not got.ok and got.matches == 0
    assert got.examples[0]["kind"] == kind
    counter = {"missing": "missing", "extra": "extra"}.get(kind, "mismatches")
    assert getattr(got, counter) == 1
    if kind.startswith("type"):
        assert got.examples[0]["types"] == f"online {type(online).__name__}, offline {type(offline).__name__}"


@pytest.mark.parametrize(
    ("dtype", "value"),
    [("float64", 3.0), ("float32", 0.5), ("int64", 3), ("int32", -1), ("bool", False), ("string", ""),
     ("bytes", b""), ("map", {"a": [1, 2.5]}), ("unix_timestamp", 1_700_000_000)],
)  # fmt: skip
def test_compare_feature_matches_values_of_their_declared_type(dtype: str, value: object) -> None:
    got = compare_feature("v:f", [1, 2], [value, None], [value, None], dtype)
    assert got.ok and got.matches == 2


def test_compare_feature_counts_each_kind() -> None:
    keys = [1, 2, 3, 4, 5, 6]
    online = [1.5, None, 2.0, None, 7.0, 0]
    offline = [1.5, None, 2.5, 4.0, None, 0]
    got = compare_feature("v:f", keys, online, offline)
    assert (got.compared, got.matches, got.mismatches, got.missing, got.extra) == (6, 3, 1, 1, 1)
    assert got.mismatch_rate == got.missing_rate == got.extra_rate == 1 / 6
    assert [e["kind"] for e in got.examples] == ["mismatch", "missing", "extra"]
    assert got.examples[0] == {"key": 3, "kind": "mismatch", "online": 2.0, "offline": 2.5}
    assert not got.ok and compare_feature("v:g", [1], [None], [None]).ok


def test_report_table_page_and_json(tmp_path: Path) -> None:
    report = ConsistencyReport(1_700_000_000 * 10**6, 2, entities={"user_id": 2})
    report.features = [
        compare_feature("v:f", [1, 2], [1, 2], [1, 2]),
        compare_feature("v:g", [1, 2], [1, None], [1, 5]),
    ]
    table = format_table(report)
    assert "v:g" in table and "50.00%" in table and "DISAGREE" in table
    page, data = write_report(report, tmp_path)
    text = page.read_text()
    assert text.count("<rect") == 1 + 3  # one bar segment (v:g missing) + the legend
    assert "<title>missing 50.00%</title>" in text
    assert json.loads(data.read_text())["features"][1]["missing"] == 1
