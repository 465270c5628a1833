"""A Kafka source's message schema, as Arrow types, and the streams a repo defines.

Feast's JsonFormat carries a Spark DDL string ("txn_id string, amount double, ...");
AvroFormat carries an Avro record schema (JSON). Both become one `SourceSchema`, the
schema of the raw events streaming stores offline: the message fields, then `created`
(the Kafka record timestamp: when the event entered the stream, stable across
replays), `kafka_partition` and `kafka_offset` (featureline.offline).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from featureline.dtypes import DTYPES, arrow_type
from featureline.errors import BadInputError
from featureline.offline import CREATED, KAFKA_OFFSET, KAFKA_PARTITION, TS_TYPE
from featureline.specs import RepoSpec, ViewSpec

# DDL column types: the Spark SQL name of each scalar dtype (featureline.dtypes), and
# the aliases Spark's DDL parser also accepts.
_DDL_ALIASES = {"varchar": "string", "long": "bigint", "integer": "int", "bool": "boolean"}
_DDL_TYPES: dict[str, pa.DataType] = {d.spark: arrow_type(d.name) for d in DTYPES.values() if d.is_scalar}
_DDL_TYPES.update({alias: _DDL_TYPES[spark] for alias, spark in _DDL_ALIASES.items()})
# Avro primitive type -> the dtype whose Arrow column it fills.
_AVRO_DTYPES = {"string": "string", "long": "int64", "int": "int32", "double": "float64",
                "float": "float32", "boolean": "bool", "bytes": "bytes"}  # fmt: skip
_AVRO_TYPES: dict[str, pa.DataType] = {avro: arrow_type(dtype) for avro, dtype in _AVRO_DTYPES.items()}
_AVRO_TS_LOGICAL = {"timestamp-micros", "timestamp-millis", "local-timestamp-micros"}


@dataclass(frozen=True)
class SourceSchema:
    """What a topic's messages must hold; one per topic, shared by its views."""

    topic: str
    message_format: str  # json | avro
    fields: tuple[tuple[str, pa.DataType], ...]
    timestamp_field: str
    # Fields that must be present and non-null: join keys of every view, event time.
    required: tuple[str, ...]
    avro_schema: dict[str, Any] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.fields)

    def raw_arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [
                *self.fields,
                (CREATED, TS_TYPE),
                (KAFKA_PARTITION, pa.int32()),
                (KAFKA_OFFSET, pa.int64()),
            ]  # fmt: skip
        )


def parse_ddl(ddl: str, source: str) -> tuple[tuple[str, pa.DataType], ...]:
    out = []
    for part in ddl.split(","):
        words = part.split()
        if len(words) != 2 or words[1].lower() not in _DDL_TYPES:
            raise BadInputError(
                f"Kafka source {source!r}: cannot read schema entry {part.strip()!r}; "
                f"expected 'name type' with type one of {', '.join(sorted(_DDL_TYPES))}"
            )
        out.append((words[0].strip("`"), _DDL_TYPES[words[1].lower()]))
    return tuple(out)


def _avro_type(spec: Any, name: str, source: str) -> pa.DataType:
    if isinstance(spec, list):  # a union: ["null", T] means a nullable T
        kinds = [s for s in spec if s != "null"]
        if len(kinds) == 1:
            return _avro_type(kinds[0], name, source)
    elif isinstance(spec, dict):
        if spec.get("logicalType") in _AVRO_TS_LOGICAL:
            return TS_TYPE
        return _avro_type(spec.get("type"), name, source)
    elif isinstance(spec, str) and spec in _AVRO_TYPES:
        return _AVRO_TYPES[spec]
    raise BadInputError(f"Kafka source {source!r}: Avro field {name!r} has unsupported type {spec}")


def parse_avro(schema_json: str, source: str) -> tuple[dict[str, Any], tuple[Any, ...]]:
    try:
        schema = json.loads(schema_json)
    except ValueError as exc:
        raise BadInputError(f"Kafka source {source!r}: Avro schema is not JSON: {exc}") from exc
    fields = tuple((f["name"], _avro_type(f["type"], f["name"], source)) for f in schema["fields"])
    return schema, fields


def source_schema(views: list[ViewSpec]) -> SourceSchema:
    """The schema of the one Kafka source that `views` read."""
    src = views[0].stream_source
    assert src is not None
    avro = None
    if src.message_format == "avro":
        avro, fields = parse_avro(src.schema, src.name)
    else:
        fields = parse_ddl(src.schema, src.name)
    names = {n for n, _ in fields}
    required = [src.timestamp_field]
    for view in views:
        required += [k for k in view.join_key_names if k not in required]
        used = [*view.join_key_names, *(f.name for f in view.input_fields or view.features)]
        if view.udf_source:
            # The udf computes the features (streaming.udf checks its output instead).
            used = list(view.join_key_names)
        missing = [n for n in [*used, src.timestamp_field] if n not in names]
        if missing:
            raise BadInputError(
                f"view {view.name!r} reads {', '.join(missing)} from Kafka source "
                f"{src.name!r}, whose schema has only: {', '.join(sorted(names))}"
            )
    return SourceSchema(src.topic, src.message_format, fields, src.timestamp_field,
                        tuple(required), avro)  # fmt: skip


def stream_views(repo: RepoSpec, only: list[str] | None = None) -> dict[str, list[ViewSpec]]:
    """Topic -> the online StreamFeatureViews reading it (every one, or those named)."""
    by_topic: dict[str, list[ViewSpec]] = {}
    for view in repo.views.values():
        if view.stream_source is None or view.kind != "stream":
            continue
        if only is not None and view.name not in only:
            continue
        by_topic.setdefault(view.stream_source.topic, []).append(view)
    for name in only or []:
        if not any(v.name == name for vs in by_topic.values() for v in vs):
            repo.view(name)  # NotFoundError for unknown names
            raise BadInputError(f"view {name!r} is not a StreamFeatureView with a KafkaSource")
    for topic, views in by_topic.items():
        schemas = {v.stream_source.schema for v in views if v.stream_source}
        if len(schemas) > 1:
            raise BadInputError(f"topic {topic!r} is read with different schemas by "
                                f"{', '.join(v.name for v in views)}")  # fmt: skip
    return by_topic
