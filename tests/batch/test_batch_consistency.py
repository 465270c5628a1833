"""The consistency measures on plain values, and the report's table and page."""

from __future__ import annotations

import json
from pathlib import Path

from batch.consistency import ConsistencyReport, compare_feature, format_table, same_value, write_report


def test_same_value_is_exact() -> None:
    assert same_value(0.1 + 0.2, 0.30000000000000004)
    assert not same_value(0.1 + 0.2, 0.3)  # one ulp apart is a mismatch
    assert same_value(float("nan"), float("nan")) and same_value(-0.0, 0.0)
    assert same_value(3, 3.0) and not same_value("3", 3) and same_value("FR", "FR")


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
