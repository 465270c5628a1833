"""The serving tests' Feast repo and data helpers (writes through the shared core only)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from featureline.aggregations import AggState
from featureline.online.feast_format import redis_key
from featureline.online.tiles import encode_tile, tile_field, tile_key, tile_parts
from featureline.online.writer import LatestRow, LatestValueWriter
from featureline.semantics import US, tile_start_us
from featureline.specs import RepoSpec, ViewSpec

_DEFS = """
from datetime import timedelta
from typing import Any

from feast import Entity, FeatureService, FeatureView, Field, FileSource, KafkaSource
from feast import RequestSource, ValueType
from feast.aggregation import Aggregation
from feast.data_format import JsonFormat
from feast.on_demand_feature_view import on_demand_feature_view
from feast.stream_feature_view import StreamFeatureView
from feast.types import Bool, Float32, Float64, Int32, Int64, String

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING)
src = FileSource(name="src", path="/nonexistent/src.parquet", timestamp_field="event_timestamp",
                 created_timestamp_column="created")
profile = FeatureView(
    name="profile", entities=[user], ttl=timedelta(days=2), source=src,
    schema=[Field(name="age", dtype=Int64), Field(name="country", dtype=String),
            Field(name="limit_eur", dtype=Float64), Field(name="score", dtype=Float32),
            Field(name="level", dtype=Int32), Field(name="vip", dtype=Bool)],
    tags={"freshness_slo": "2d"},
)
pair = FeatureView(name="pair", entities=[user, merchant], ttl=timedelta(0), source=src,
                   schema=[Field(name="n_txn", dtype=Int64)])
txns = KafkaSource(
    name="txns", kafka_bootstrap_servers="localhost:9092", topic="txns",
    timestamp_field="event_timestamp",
    message_format=JsonFormat(schema_json="user_id long, amount double, merchant_id string"),
    batch_source=src,
)
txn_stats = StreamFeatureView(
    name="txn_stats", entities=[user], source=txns, timestamp_field="event_timestamp",
    ttl=timedelta(days=1),
    schema=[Field(name="user_id", dtype=Int64), Field(name="amount", dtype=Float64),
            Field(name="merchant_id", dtype=String)],
    tags={"freshness_slo": "1m"},
    aggregations=[
        Aggregation(column="amount", function=fn, time_window=timedelta(hours=1),
                    name=f"{fn}_amount_1h")
        for fn in ("count", "sum", "mean", "min", "max")
    ] + [
        Aggregation(column="amount", function="sum", time_window=timedelta(minutes=10),
                    slide_interval=timedelta(minutes=1), name="sum_amount_10m"),
        Aggregation(column="merchant_id", function="count_distinct",
                    time_window=timedelta(hours=24), name="merchants_24h"),
    ],
)
req = RequestSource(name="req", schema=[Field(name="amount", dtype=Float64)])


@on_demand_feature_view(sources=[profile, req],
                        schema=[Field(name="amount_over_limit", dtype=Float64)], mode="python")
def ratio(inputs: dict[str, Any]) -> dict[str, Any]:
    out = []
    for a, limit in zip(inputs["amount"], inputs["limit_eur"]):
        out.append(a / limit if a is not None and limit else None)
    return {"amount_over_limit": out}


@on_demand_feature_view(sources=[txn_stats, req],
                        schema=[Field(name="amount_to_mean", dtype=Float64)], mode="python")
def vs_mean(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"amount_to_mean": [
        a / m if a is not None and m else None
        for a, m in zip(inputs["amount"], inputs["mean_amount_1h"])
    ]}


svc = FeatureService(name="svc", features=[profile[["limit_eur", "age"]], pair, ratio])
model_svc = FeatureService(name="model_svc", features=[txn_stats, profile, vs_mean])
"""


def feature_store_yaml(project: str) -> str:
    """The test repos' feature_store.yaml: Redis and the SQL registry from the env."""
    return f"""project: {project}
provider: local
registry:
  registry_type: sql
  path: ${{FEATURELINE_REGISTRY_URL}}
online_store:
  type: redis
  connection_string: ${{FEATURELINE_REDIS_ADDR}}
offline_store:
  type: file
entity_key_serialization_version: 3
"""


SERVING_REPO_FILES = {
    "feature_store.yaml": feature_store_yaml("serving_test"),
    "defs.py": _DEFS,
}
# Objects Feast itself can apply: Feast 0.67 infers an ODFV's schema from its sources'
# schema fields, so an ODFV over aggregations (vs_mean) fails its `feast apply`.
FEAST_OBJECTS = ("user", "merchant", "profile", "pair", "ratio", "svc")


def now_us() -> int:
    return time.time_ns() // 1000


def write_latest(client: Any, repo: RepoSpec, view: str, rows: Iterable[dict[str, Any]]) -> None:
    """Rows {join keys..., "event_us", feature values...} through the shared LWW writer."""
    spec = repo.view(view)
    names = spec.join_key_names
    dtypes = [k.dtype for k in spec.join_keys]
    latest = [
        LatestRow(
            redis_key(repo.project, names, dtypes, [r[n] for n in names]),
            r["event_us"],
            r.get("created_us"),
            {f: r.get(f) for f in spec.feature_names},
        )
        for r in rows
    ]
    LatestValueWriter(client, spec).write(latest)


def build_tiles(
    view: ViewSpec, events: Sequence[tuple[int, dict[str, Any]]]
) -> dict[int, dict[int, dict[str, AggState]]]:
    """(event_us, column values) of one entity -> tile size -> tile start (s) -> states."""
    out: dict[int, dict[int, dict[str, AggState]]] = {}
    for tile_s in view.tile_sizes_s():
        columns = tile_parts(view, tile_s)
        tiles: dict[int, dict[str, AggState]] = {}
        for event_us, values in events:
            start = tile_start_us(event_us, tile_s) // US
            states = tiles.setdefault(start, {c: AggState() for c in columns})
            for col, parts in columns.items():
                states[col].add(values.get(col), parts=parts)
        out[tile_s] = tiles
    return out


def write_tiles(
    client: Any,
    repo: RepoSpec,
    view: str,
    key_values: Sequence[Any],
    events: Sequence[tuple[int, dict[str, Any]]],
    partition: int = 0,
) -> None:
    spec = repo.view(view)
    entity = redis_key(repo.project, spec.join_key_names, [k.dtype for k in spec.join_keys], key_values)[
        : -len(repo.project.encode())
    ]
    for tile_s, tiles in build_tiles(spec, events).items():
        key = tile_key(repo.project, view, tile_s, entity)
        mapping = {tile_field(start, partition): encode_tile(st) for start, st in tiles.items()}
        if mapping:
            client.hset(key, mapping=mapping)
