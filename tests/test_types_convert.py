"""Feast definitions -> specs for types: an Entity without value_type gets its join key's
type from the source (string and int keys), as `feast apply` infers it; a type
Featureline does not carry, or a key whose type cannot be found, is a clear error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featureline.errors import BadInputError
from featureline.repo import parse_feast_repo

_YAML = """\
project: conv
provider: local
registry: data/registry.db
online_store:
  type: sqlite
offline_store:
  type: file
entity_key_serialization_version: 3
"""


def _repo(tmp_path: Path, defs: str) -> Path:
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(_YAML)
    (repo / "defs.py").write_text(textwrap.dedent(defs))
    ts = pa.array([0], pa.timestamp("us", tz="UTC"))
    pq.write_table(
        pa.table({"shop": ["s1"], "user_id": pa.array([1], pa.int32()), "ts": ts, "v": [1.0]}),
        repo / "data" / "src.parquet",
    )
    return repo


_HEAD = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Array, Float64, Int64, Set, String
src = FileSource(name="src", path="data/src.parquet", timestamp_field="ts")
"""


def test_entity_types_come_from_the_source(tmp_path: Path) -> None:
    defs = (
        _HEAD
        + """
shop = Entity(name="shop", join_keys=["shop"])
user = Entity(name="user", join_keys=["user_id"])
v = FeatureView(name="v", entities=[shop, user], ttl=timedelta(0), source=src,
                schema=[Field(name="v", dtype=Float64), Field(name="tags", dtype=Array(String))])
"""
    )
    spec = parse_feast_repo(_repo(tmp_path, defs))
    assert {n: e.dtype for n, e in spec.entities.items()} == {"shop": "string", "user": "int32"}
    assert [(k.name, k.dtype) for k in spec.view("v").join_keys] == [("shop", "string"), ("user_id", "int32")]
    assert [(f.name, f.dtype) for f in spec.view("v").features] == [("v", "float64"), ("tags", "string_list")]


def test_a_key_type_that_cannot_be_found_is_named(tmp_path: Path) -> None:
    defs = (
        _HEAD
        + """
city = Entity(name="city", join_keys=["city_id"])
v = FeatureView(name="v", entities=[city], ttl=timedelta(0), source=src,
                schema=[Field(name="v", dtype=Float64)])
"""
    )
    with pytest.raises(BadInputError, match="entity 'city' has no value_type .* 'city_id'"):
        parse_feast_repo(_repo(tmp_path, defs))


def test_an_unsupported_feast_type_is_named(tmp_path: Path) -> None:
    defs = (
        _HEAD
        + """
shop = Entity(name="shop", join_keys=["shop"])
v = FeatureView(name="v", entities=[shop], ttl=timedelta(0), source=src,
                schema=[Field(name="ids", dtype=Set(Int64))])
"""
    )
    with pytest.raises(BadInputError, match="feature v:ids has Feast type .* not supported; supported: "):
        parse_feast_repo(_repo(tmp_path, defs))
