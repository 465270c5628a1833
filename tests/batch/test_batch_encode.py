"""Column encoders and the latest-row pick, against the per-value reference code."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
from oracle.naive import Event, latest_row

from featureline.batch.backfill.events import CREATED_US, TS_US
from featureline.batch.backfill.groups import window_bounds
from featureline.batch.materialize.encode import encode_column, encode_keys, encode_orders, encode_timestamps
from featureline.batch.materialize.latest import latest_per_key
from featureline.online.feast_format import (
    encode_timestamp,
    encode_value,
    order_value,
    redis_key,
)
from featureline.specs import RepoSpec

INTS = [0, 1, -1, 127, 128, 300, 2**31 - 1, -(2**31), 2**53 + 1, 2**63 - 1, -(2**63), None]
FLOATS = [0.0, -0.0, 1.5, -2.25, 1e-310, 5e-324, 1.7976931348623157e308, float("inf"), None]


@pytest.mark.parametrize(
    ("dtype", "values", "arrow"),
    [
        ("int64", INTS, pa.int64()),
        ("int32", [v for v in INTS if v is None or -(2**31) <= v < 2**31], pa.int32()),
        ("float64", FLOATS, pa.float64()),
        ("float32", [1.5, None, -0.0, 3.0e38], pa.float32()),
        ("string", ["", "é", "x" * 300, None], pa.string()),
        ("bytes", [b"", b"\x00\xff", b"y" * 200, None], pa.binary()),
        ("bool", [True, False, None], pa.bool_()),
    ],
)
def test_encode_column_equals_feast_value_encoding(dtype: str, values: list, arrow: pa.DataType) -> None:
    arr = pa.array(values, arrow)
    assert encode_column(dtype, arr).to_pylist() == [encode_value(dtype, v) for v in arr.to_pylist()]


def test_encode_keys_timestamps_orders_equal_reference() -> None:
    rng = np.random.default_rng(5)
    users = pa.array([0, 1, -7, 2**40, 2**63 - 1])
    assert encode_keys("proj", ["user_id"], ["int64"], [users]).to_pylist() == [
        redis_key("proj", ["user_id"], ["int64"], [u]) for u in users.to_pylist()
    ]
    merchants = pa.array(["m1", "", "é"])
    assert encode_keys("p", ["merchant_id"], ["string"], [merchants]).to_pylist() == [
        redis_key("p", ["merchant_id"], ["string"], [m]) for m in merchants.to_pylist()
    ]
    ts = np.concatenate([[0, 1, 999_999, 1_000_000], rng.integers(1.6e15, 1.9e15, 200)])
    assert encode_timestamps(ts).to_pylist() == [encode_timestamp(int(t)) for t in ts]
    created = rng.integers(0, 1.9e15, len(ts))
    has = rng.random(len(ts)) < 0.8
    assert encode_orders(ts, created, has).to_pylist() == [
        order_value(int(e), int(c) if h else None) for e, c, h in zip(ts, created, has, strict=True)
    ]


def test_latest_per_key_equals_the_oracle(demo_spec: RepoSpec) -> None:
    view = demo_spec.view("user_profile")
    rng = random.Random(3)
    rows = []
    for i in range(400):
        ts = rng.choice([10, 20, 30]) * 1_000_000  # many equal event times
        created = rng.choice([-1, 5, 6])  # -1: no created time
        rows.append({"user_id": rng.randrange(30), TS_US: ts, CREATED_US: created, "kafka_offset": i,
                     "account_age_days": i, "home_country": "FR", "credit_limit": float(i)})  # fmt: skip
    got = {
        r["user_id"]: r["account_age_days"]
        for r in latest_per_key(pa.Table.from_pylist(rows), view).to_pylist()
    }
    # A full tie (event and created time) goes to the later Kafka offset, as streaming's
    # LWW write (>=) decides it: rows are in offset order, so the last copy stays.
    last_copy = {(r["user_id"], r[TS_US], r[CREATED_US]): r for r in rows}
    events = [Event((r["user_id"],), r[TS_US], None if r[CREATED_US] < 0 else r[CREATED_US], r)
              for r in last_copy.values()]  # fmt: skip
    users = {r["user_id"] for r in rows}
    want = {u: latest_row(events, (u,), 2**62, 0).values["account_age_days"] for u in users}
    assert got == want


def test_window_bounds_fallback_equals_composite_search() -> None:
    rng = np.random.default_rng(9)
    gid = np.sort(rng.integers(0, 50, 2000))
    ts = np.concatenate([np.sort(rng.integers(0, 10**6, (gid == g).sum())) for g in range(50)])
    lo_ts = ts - rng.integers(0, 10**5, len(ts))
    composite = window_bounds(gid, ts, lo_ts, ts)
    # The same search with a span too wide for one int64 key takes the per-group path.
    wide = ts.astype(np.int64) * 2**40
    loop = window_bounds(gid, wide, lo_ts.astype(np.int64) * 2**40, wide)
    assert np.array_equal(composite[0], loop[0]) and np.array_equal(composite[1], loop[1])


def test_packed_commands_equal_hiredis(demo_spec: RepoSpec) -> None:
    """The column-wise RESP of LatestLwwWriter is hiredis.pack_command's, byte for byte."""
    import hiredis

    from featureline.batch.materialize.latest import CHUNK_KEYS, LatestLwwWriter, encode_rows
    from featureline.online.feast_format import feature_field, order_field, ts_field

    class _Store:
        def load_script(self, script: str) -> bytes:
            return b"f" * 40

    view = demo_spec.view("user_profile")
    n = CHUNK_KEYS + 7  # two calls
    rows = pa.table({
        "user_id": pa.array(range(n), pa.int64()), TS_US: pa.array([10**15 + i for i in range(n)]),
        CREATED_US: pa.array([-1 if i % 5 == 0 else 10**15 + 2 * i for i in range(n)]),
        "account_age_days": pa.array([None if i % 7 == 0 else i for i in range(n)], pa.int64()),
        "home_country": pa.array([None if i % 3 == 0 else "é" * (i % 4) for i in range(n)]),
        "credit_limit": pa.array([i / 3 for i in range(n)]),
    })  # fmt: skip
    encoded = encode_rows(rows, view, "proj", has_created=True)
    got = list(LatestLwwWriter(_Store(), view).commands(encoded))
    assert len(got) == 2
    fields = [feature_field("user_profile", f) for f in view.feature_names]
    for call, lo in zip(got, (0, CHUNK_KEYS), strict=True):
        part = encoded.slice(lo, lo + CHUNK_KEYS)
        argv: list[bytes] = [order_field("user_profile"), b"0", b"4", *fields, ts_field("user_profile")]
        for i in range(len(part)):
            argv.append(part.orders[i].as_py())
            argv += [col[i].as_py() for col in part.columns]
            argv.append(part.timestamps[i].as_py())
        want = hiredis.pack_command(("EVALSHA", "f" * 40, len(part), *part.keys.to_pylist(), *argv))
        assert call == want
