"""A Feast repo with a feature of every value type Featureline carries, and its data.

Shared by the type tests of materialize/serving (tests/serving/test_serve_types.py) and
historical retrieval (tests/historical/test_types_historical.py). The entity has no
value_type (the `feast init` default): its join key's type is inferred from the source.
Driver 4's row is null in every feature; driver 1 has an older row too.
"""

from __future__ import annotations

import importlib.util
import math
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

PROJECT = "types_test"
VIEW = "every_type"
T0 = datetime(2024, 1, 10, tzinfo=UTC)
DRIVERS = [1, 2, 3, 4]
NULL_DRIVER = 4

DEFS = """
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import (Array, Bool, Bytes, Float32, Float64, Int32, Int64, Json, Map, String,
                         Struct, UnixTimestamp)

driver = Entity(name="driver", join_keys=["driver_id"])
source = FileSource(name="every_type_source", path="data/every_type.parquet",
                    timestamp_field="event_timestamp", created_timestamp_column="created")
SCALARS = {"i32": Int32, "i64": Int64, "f32": Float32, "f64": Float64, "s": String, "b": Bytes,
           "flag": Bool, "ts": UnixTimestamp}
every_type = FeatureView(
    name="every_type", entities=[driver], ttl=timedelta(0), source=source,
    schema=[Field(name=n, dtype=t) for n, t in SCALARS.items()]
    + [Field(name=f"{n}_list", dtype=Array(t)) for n, t in SCALARS.items()]
    + [Field(name="m", dtype=Map), Field(name="j", dtype=Json),
       Field(name="st", dtype=Struct({"name": String, "age": Int64}))],
)
every_type_service = FeatureService(name="every_type_service", features=[every_type])
"""
FEAST_OBJECTS = ("driver", "source", "every_type", "every_type_service")

SCALAR_NAMES = ("i32", "i64", "f32", "f64", "s", "b", "flag", "ts")
FEATURES = (
    *SCALAR_NAMES,
    *(f"{n}_list" for n in SCALAR_NAMES),
    "m",
    "j",
    "st",
)
DTYPES = {
    "i32": "int32", "i64": "int64", "f32": "float32", "f64": "float64", "s": "string",
    "b": "bytes", "flag": "bool", "ts": "unix_timestamp",
    **{f"{n}_list": f"{d}_list" for n, d in {
        "i32": "int32", "i64": "int64", "f32": "float32", "f64": "float64", "s": "string",
        "b": "bytes", "flag": "bool", "ts": "unix_timestamp"}.items()},
    "m": "map", "j": "json", "st": "struct",
}  # fmt: skip
REFS = [f"{VIEW}:{f}" for f in FEATURES]

_TS = pa.timestamp("us", tz="UTC")
_SCHEMA = pa.schema(
    [
        ("driver_id", pa.int64()),
        ("event_timestamp", _TS),
        ("created", _TS),
        ("i32", pa.int32()),
        ("i64", pa.int64()),
        ("f32", pa.float32()),
        ("f64", pa.float64()),
        ("s", pa.string()),
        ("b", pa.binary()),
        ("flag", pa.bool_()),
        ("ts", _TS),
        ("i32_list", pa.list_(pa.int32())),
        ("i64_list", pa.list_(pa.int64())),
        ("f32_list", pa.list_(pa.float32())),
        ("f64_list", pa.list_(pa.float64())),
        ("s_list", pa.list_(pa.string())),
        ("b_list", pa.list_(pa.binary())),
        ("flag_list", pa.list_(pa.bool_())),
        ("ts_list", pa.list_(_TS)),
        # Feast's template stores its Map as a Parquet struct (read as a dict).
        ("m", pa.struct([("vehicle", pa.string()), ("seats", pa.int64()), ("rating", pa.float64())])),
        ("j", pa.string()),
        ("st", pa.struct([("name", pa.string()), ("age", pa.int64())])),
    ]
)


def _row(driver: int, event: datetime) -> dict[str, Any]:
    if driver == NULL_DRIVER:
        return {"driver_id": driver, "event_timestamp": event, "created": event}
    k = driver + (event.day % 7) * 10
    return {
        "driver_id": driver,
        "event_timestamp": event,
        "created": event,
        "i32": -(2**31) + k if driver == 1 else k,
        "i64": 2**62 + k if driver == 2 else -k,
        "f32": 0.1 * k,
        "f64": math.inf if driver == 3 else k / 3,
        "s": f"driver é{k}",
        "b": bytes([0, k, 255]),
        "flag": driver % 2 == 0,
        "ts": T0 - timedelta(days=k, seconds=k),
        "i32_list": [k, -k, 2**31 - 1],
        "i64_list": [] if driver == 3 else [k, -(2**40)],
        "f32_list": [0.5, float(k)],
        "f64_list": [math.nan, k / 7] if driver == 2 else [k / 7],
        "s_list": ["a", "", f"s{k}"],
        "b_list": [b"", bytes([k])],
        "flag_list": [True, False, driver == 1],
        "ts_list": [T0 + timedelta(hours=k), T0 - timedelta(days=k)],
        "m": {"vehicle": "truck" if k % 2 else "sedan", "seats": k, "rating": k / 2},
        "j": '{"max_km": ' + str(k) + ', "zones": ["north", "east"], "ok": true}',
        "st": {"name": f"driver_{k}", "age": 30 + k},
    }


def source_rows() -> list[dict[str, Any]]:
    rows = [_row(d, T0 + timedelta(hours=d)) for d in DRIVERS]
    rows.append(_row(1, T0 - timedelta(days=2)))  # older: historical sees it, online not
    return rows


def source_by_driver() -> dict[int, dict[str, Any]]:
    """Each driver's newest row (what materialize writes)."""
    return {r["driver_id"]: r for r in source_rows()[: len(DRIVERS)]}


def write_repo(repo: Path, redis_addr: str) -> None:
    """The repo files and its data (Parquet) under `repo`; Feast's online store is the
    test Redis (both writers are compared on it)."""
    (repo / "data").mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        textwrap.dedent(f"""\
        project: {PROJECT}
        provider: local
        registry: data/registry.db
        online_store:
          type: redis
          connection_string: "{redis_addr}"
        offline_store:
          type: file
        entity_key_serialization_version: 3
        """)
    )
    (repo / "defs.py").write_text(DEFS)
    table = pa.Table.from_pylist(source_rows(), schema=_SCHEMA)
    pq.write_table(table, repo / "data" / "every_type.parquet")


def feast_store(repo: Path) -> Any:
    """Feast's FeatureStore on the repo, with its objects applied (imports feast)."""
    from feast import FeatureStore

    spec = importlib.util.spec_from_file_location("types_defs", repo / "defs.py")
    assert spec is not None and spec.loader is not None
    defs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(defs)
    store = FeatureStore(repo_path=str(repo))
    store.apply([getattr(defs, name) for name in FEAST_OBJECTS])
    return store


def plain(value: Any) -> Any:
    """A value as plain Python for comparing (numpy arrays -> lists, NaN -> "NaN")."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, np.generic):
        return plain(value.item())
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    return value
