"""Data-quality expectations (featureline.expectations): tags read into rules, each rule
checked on plain Arrow tables, and bad tags refused with the view and field named."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest

from featureline.errors import BadInputError
from featureline.expectations import check, expectations_of
from featureline.specs import FieldSpec, ViewSpec

VIEW = ViewSpec(
    name="txn",
    kind="stream",
    entities=("user",),
    join_keys=(FieldSpec("user_id", "int64"),),
    features=(FieldSpec("amount", "float64"), FieldSpec("country", "string")),
    ttl_s=0,
    timestamp_field="ts",
    tags={"dq.monotonic_timestamps": "true", "dq.policy": "dead_letter"},
    field_tags={
        "amount": {"dq.min": "0", "dq.max": "10000", "dq.max_null_rate": "0.25", "owner": "risk"},
        "country": {"dq.allowed": "FR,DE", "dq.not_null": "true"},
    },
)
TABLE = pa.table(
    {
        "user_id": [1, 1, 2, 1, 2],
        "amount": [5.0, -1.0, None, 20_000.0, 3.0],
        "country": ["FR", "DE", "US", None, "FR"],
        "ts": [10, 20, 30, 15, 29],  # user 1 goes back (15 < 20), user 2 too (29 < 30)
    }
)


def _by_kind(table: pa.Table, **kw: bool) -> dict[str, list[int]]:
    exp = expectations_of(VIEW)
    return {f"{v.rule.field}:{v.rule.kind}": v.rows.tolist() for v in check(table, exp, **kw)}


def test_every_rule_finds_its_rows() -> None:
    # amount: 1 null in 5 rows = 20%, within max_null_rate 25%: no table-level finding.
    assert _by_kind(TABLE) == {
        "amount:min": [1],
        "amount:max": [3],
        "country:allowed": [2],
        "country:not_null": [3],
        ":monotonic_timestamps": [3, 4],
    }


def test_null_rate_is_a_table_rule_and_skipped_for_stream_batches() -> None:
    nulls = TABLE.set_column(1, "amount", pa.array([None, None, 1.0, 2.0, 3.0], pa.float64()))
    exp = expectations_of(VIEW)
    table_level = [v for v in check(nulls, exp) if v.rule.kind == "max_null_rate"]
    assert len(table_level) == 1 and "40.00% nulls" in table_level[0].message
    assert not [v for v in check(nulls, exp, table_rules=False) if v.rule.kind == "max_null_rate"]


def test_reasons_name_view_field_value_and_rule() -> None:
    exp = expectations_of(VIEW)
    too_big = next(v for v in check(TABLE, exp) if v.rule.kind == "max")
    assert (
        too_big.reason(TABLE, 3)
        == "expectation failed: view 'txn', field 'amount' = 20000.0 breaks max 10000"
    )


def test_policy_and_no_rules() -> None:
    assert expectations_of(VIEW).policy == "dead_letter"
    plain = dataclasses.replace(VIEW, tags={}, field_tags={})
    assert expectations_of(plain).rules == () and expectations_of(plain).policy == "count"
    assert check(TABLE, expectations_of(plain)) == []


def test_monotonic_on_many_entities_matches_a_loop() -> None:
    rng = np.random.default_rng(3)
    users, ts = rng.integers(0, 50, 2000), rng.integers(0, 10_000, 2000)
    table = pa.table({"user_id": users, "amount": np.ones(2000), "country": ["FR"] * 2000, "ts": ts})
    found = next(v for v in check(table, expectations_of(VIEW)) if v.rule.kind == "monotonic_timestamps")
    latest: dict[int, int] = {}
    expected = []
    for i, (u, t) in enumerate(zip(users.tolist(), ts.tolist(), strict=True)):
        if u in latest and t < latest[u]:
            expected.append(i)
        latest[u] = max(latest.get(u, t), t)
    assert found.rows.tolist() == expected


@pytest.mark.parametrize(
    ("tags", "field_tags", "message"),
    [
        ({}, {"amount": {"dq.max": "lots"}}, "field 'amount', tag dq.max: expected a number"),
        ({}, {"amount": {"dq.maximum": "1"}}, "unknown expectation"),
        ({}, {"amount": {"dq.max_null_rate": "2"}}, "a rate between 0 and 1"),
        ({}, {"country": {"dq.not_null": "yes"}}, "expected true or false"),
        ({}, {"amount": {"dq.allowed": "1.5,lots"}}, "'lots' is not a value of this float64 field"),
        ({}, {"user_id": {"dq.allowed": "1,1.5"}}, "'1.5' is not a value of this int64 field"),
        ({"dq.policy": "drop"}, {}, "one of count, dead_letter"),
        ({"dq.sorted": "true"}, {}, "unknown expectation (known on a view"),
    ],
)
def test_bad_tags_are_refused(
    tags: dict[str, str], field_tags: dict[str, dict[str, str]], message: str
) -> None:
    view = dataclasses.replace(VIEW, tags=tags, field_tags=field_tags)
    with pytest.raises(BadInputError, match="feature view 'txn'") as info:
        expectations_of(view)
    assert message in str(info.value)
