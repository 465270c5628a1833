"""Feast objects -> featureline specs. Imported only by `featureline.repo` (needs feast)."""

from __future__ import annotations

import dataclasses
import inspect
from datetime import timedelta
from pathlib import Path
from typing import Any

from featureline._feast_permissions import convert_permissions
from featureline._feast_unused import unused_objects
from featureline.aggregations import FUNCTIONS, output_dtype
from featureline.dtypes import KEY_DTYPES, from_feast_name, supported
from featureline.errors import BadInputError, ServiceUnavailableError
from featureline.object_store import Location, is_uri
from featureline.specs import (
    AggregationSpec,
    DocSpec,
    EntitySpec,
    FieldSpec,
    FileSourceSpec,
    KafkaSourceSpec,
    LoggingSpec,
    OnDemandViewSpec,
    ProjectionSpec,
    RepoSpec,
    ServiceSpec,
    ViewSpec,
    doc_key,
)


def _dtype(feast_type: Any, what: str = "a field") -> str:
    """A Feast type (a Field's FeastType or a ValueType) -> our dtype name."""
    value_type = feast_type.to_value_type() if hasattr(feast_type, "to_value_type") else feast_type
    name = getattr(value_type, "name", str(value_type))
    dtype = from_feast_name(name)
    if not dtype:
        raise BadInputError(
            f"{what} has Feast type {feast_type}, which is not supported; supported: {supported()}"
        )
    return dtype


def _source_key_type(view: Any, join_key: str, repo: Path) -> str:
    """The type of a join key column in a view's batch source, as Feast infers it at
    apply (feast.inference: the source's column type; Parquet read with pyarrow)."""
    source = _file_source(getattr(view, "batch_source", None), repo)
    if source is None:
        return ""
    from feast.type_map import pa_to_feast_value_type

    try:
        schema = Location.of(source).dataset().schema
    except (OSError, ValueError, ServiceUnavailableError):
        return ""
    if join_key not in schema.names:
        return ""
    return from_feast_name(pa_to_feast_value_type(str(schema.field(join_key).type)).name)


def _infer_entity_type(entity: Any, views: list[Any], repo: Path) -> str:
    """An Entity without value_type (Feast's default): its join key's type from a view
    that uses it, as `feast apply` infers it (the view's entity columns, else the batch
    source's schema)."""
    users = [v for v in views if entity.name in v.entities]
    for view in users:
        for column in view.entity_columns or []:
            if column.name == entity.join_key:
                return _key_dtype(column.dtype, f"join key {entity.join_key!r}")
    for view in users:
        dtype = _source_key_type(view, entity.join_key, repo)
        if dtype:
            return _key_dtype(dtype, f"join key {entity.join_key!r}")
    raise BadInputError(
        f"entity {entity.name!r} has no value_type and the type of its join key {entity.join_key!r} "
        "cannot be inferred: no feature view using it has that column in its source; "
        "set value_type on the Entity"
    )


def _entity_spec(entity: Any, views: list[Any], repo: Path) -> EntitySpec:
    if entity.value_type.name == "UNKNOWN":
        dtype = _infer_entity_type(entity, views, repo)
    else:
        dtype = _key_dtype(entity.value_type, f"entity {entity.name!r}")
    return EntitySpec(entity.name, entity.join_key, dtype)


def _seconds(delta: timedelta | None) -> int:
    return 0 if delta is None else int(delta.total_seconds())


def _file_source(source: Any, repo: Path) -> FileSourceSpec | None:
    if source is None or type(source).__name__ != "FileSource":
        return None
    # A URI stays as written (Path would fold "s3://b/k" into "s3:/b/k"); a relative
    # path is relative to the repo, as Feast reads it.
    path = source.path if is_uri(source.path) else str((repo / source.path).resolve())
    return FileSourceSpec(
        name=source.name,
        path=path,
        timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column or "",
        field_mapping=dict(source.field_mapping or {}),
        s3_endpoint_override=getattr(source, "s3_endpoint_override", None) or "",
    )


def _kafka_source(source: Any, repo: Path) -> KafkaSourceSpec | None:
    if source is None or type(source).__name__ != "KafkaSource":
        return None
    fmt = source.kafka_options.message_format
    fmt_name = type(fmt).__name__.replace("Format", "").lower()
    if fmt_name not in ("json", "avro"):
        raise BadInputError(f"Kafka source {source.name!r}: message format {fmt_name} is not supported")
    return KafkaSourceSpec(
        name=source.name,
        bootstrap_servers=source.kafka_options.kafka_bootstrap_servers,
        topic=source.kafka_options.topic,
        message_format=fmt_name,  # type: ignore[arg-type]
        schema=getattr(fmt, "schema_json", "") or "",
        timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column or "",
        watermark_delay_s=_seconds(source.kafka_options.watermark_delay_threshold),
        batch_source=_file_source(source.batch_source, repo),
    )


def _aggregations(
    view: Any, inputs: dict[str, str]
) -> tuple[tuple[AggregationSpec, ...], tuple[FieldSpec, ...]]:
    aggs, outputs = [], []
    for agg in getattr(view, "aggregations", None) or []:
        if agg.time_window is None:
            raise BadInputError(f"view {view.name!r}: aggregation on {agg.column!r} has no time_window")
        if agg.column not in inputs:
            raise BadInputError(f"view {view.name!r}: aggregation column {agg.column!r} is not in its schema")
        if agg.function not in FUNCTIONS:
            raise BadInputError(
                f"view {view.name!r}: aggregation function {agg.function!r} on {agg.column!r} is not "
                f"supported; supported: {', '.join(FUNCTIONS)}"
            )
        spec = AggregationSpec(
            column=agg.column,
            function=agg.function,
            window_s=_seconds(agg.time_window),
            slide_s=_seconds(agg.slide_interval),
            name=agg.resolved_name(agg.time_window),
        )
        aggs.append(spec)
        # Feast's names are kept as given (std and stddev are both functions of the
        # registry), so resolved_name is Feast's own.
        outputs.append(FieldSpec(spec.name, output_dtype(spec.function, inputs[agg.column])))
    return tuple(aggs), tuple(outputs)


def _key_dtype(feast_type: Any, what: str) -> str:
    dtype = _dtype(feast_type, what)
    if dtype not in KEY_DTYPES:
        raise BadInputError(f"{what} has type {dtype}; Feast's entity keys may be: {', '.join(KEY_DTYPES)}")
    return dtype


def _join_keys(view: Any, entities: dict[str, EntitySpec]) -> tuple[FieldSpec, ...]:
    if view.entity_columns:
        columns = view.entity_columns
        return tuple(FieldSpec(c.name, _key_dtype(c.dtype, f"join key {c.name!r}")) for c in columns)
    # Before `feast apply` infers them, a view's key columns come from its entities.
    keys = []
    for name in view.entities:
        if name == "__dummy":
            continue
        if name not in entities:
            raise BadInputError(f"view {view.name!r} uses unknown entity {name!r}")
        keys.append(FieldSpec(entities[name].join_key, entities[name].dtype))
    return tuple(keys)


def _push_source_name(view: Any) -> str:
    """The name of the PushSource feeding `view` ("" if none). Feast sets a view's
    stream_source to the PushSource and its batch_source to the push source's."""
    source = getattr(view, "stream_source", None)
    return source.name if source is not None and type(source).__name__ == "PushSource" else ""


def _field_tags(view: Any) -> dict[str, dict[str, str]]:
    """Tags of the view's fields and entity columns, by name (untagged ones left out)."""
    fields = [*view.features, *getattr(view, "entity_columns", [])]
    return {f.name: dict(f.tags) for f in fields if getattr(f, "tags", None)}


def convert_view(view: Any, repo: Path, kind: str, entities: dict[str, EntitySpec]) -> ViewSpec:
    join_keys = _join_keys(view, entities)
    key_names = {k.name for k in join_keys}
    plain = tuple(
        FieldSpec(f.name, _dtype(f.dtype, f"feature {view.name}:{f.name}"))
        for f in view.features
        if f.name not in key_names
    )
    declared_outputs = {a.resolved_name(a.time_window) for a in getattr(view, "aggregations", [])}
    # An aggregating view may declare its outputs in its schema (so Feast sees them);
    # its inputs are the other fields.
    plain_inputs = tuple(f for f in plain if f.name not in declared_outputs)
    inputs = {f.name: f.dtype for f in plain_inputs}
    aggs, agg_outputs = _aggregations(view, inputs)
    stream = _kafka_source(getattr(view, "stream_source", None), repo)
    batch = _file_source(view.batch_source, repo) or (stream.batch_source if stream else None)
    source = stream or batch
    return ViewSpec(
        name=view.name,
        kind=kind,  # type: ignore[arg-type]
        entities=tuple(e for e in view.entities if e != "__dummy"),
        join_keys=join_keys,
        features=agg_outputs if aggs else plain,
        ttl_s=_seconds(view.ttl),
        timestamp_field=(getattr(view, "timestamp_field", "") or (source.timestamp_field if source else "")),
        created_timestamp_column=source.created_timestamp_column if source else "",
        batch_source=batch,
        stream_source=stream,
        aggregations=aggs,
        input_fields=plain_inputs if aggs else (),
        online=bool(view.online),
        udf_source=getattr(view, "udf_string", "") or "",
        tags=dict(view.tags or {}),
        field_tags=_field_tags(view),
        push_source=_push_source_name(view),
    )


def convert_label_view(view: Any, repo: Path, entities: dict[str, EntitySpec]) -> ViewSpec:
    """A LabelView as Feast 0.67 defines it: written by push only (never materialized),
    served online last-write-wins whatever its policy; offline, its ConflictPolicy."""
    spec = convert_view(view, repo, "batch", entities)
    return dataclasses.replace(
        spec, label_policy=str(view.conflict_policy.value), labeler_field=str(view.labeler_field)
    )


def convert_odfv(odfv: Any, views: dict[str, ViewSpec]) -> OnDemandViewSpec:
    transformation = odfv.feature_transformation
    udf = getattr(transformation, "udf", None)
    source_text = getattr(transformation, "udf_string", "") or (inspect.getsource(udf) if udf else "")
    request_fields = tuple(
        FieldSpec(f.name, _dtype(f.dtype, f"request field {f.name!r}"))
        for rs in odfv.source_request_sources.values()
        for f in rs.schema
    )
    return OnDemandViewSpec(
        name=odfv.name,
        mode=str(odfv.mode),
        sources=tuple(
            (p.name, _projection(p, views, {}).features)
            for p in odfv.source_feature_view_projections.values()
        ),
        request_fields=request_fields,
        features=tuple(
            FieldSpec(f.name, _dtype(f.dtype, f"feature {odfv.name}:{f.name}")) for f in odfv.features
        ),
        udf_name=getattr(udf, "__name__", odfv.name),
        udf_source=source_text,
    )


def _projection(proj: Any, views: dict[str, ViewSpec], odfvs: dict[str, OnDemandViewSpec]) -> ProjectionSpec:
    names = [f.name for f in proj.features]
    available = views[proj.name].feature_names if proj.name in views else odfvs[proj.name].feature_names
    chosen = tuple(n for n in names if n in available)
    # A whole-view reference to an aggregating view lists its schema (inputs):
    # it means all of the view's aggregations.
    return ProjectionSpec(view=proj.name, alias=proj.name_to_use(), features=chosen or available)


def _doc(obj: Any) -> DocSpec | None:
    """An object's description, owner and tags; None when it has none of them."""
    doc = DocSpec(
        description=str(getattr(obj, "description", "") or ""),
        owner=str(getattr(obj, "owner", "") or ""),
        tags={str(k): str(v) for k, v in (getattr(obj, "tags", None) or {}).items()},
    )
    return doc if doc != DocSpec() else None


def repo_docs(contents: Any) -> dict[str, DocSpec]:
    """The documentation of every object of the repo (web UI), fields included."""
    objects: list[tuple[str, Any]] = [("entity", e) for e in contents.entities if e.name != "__dummy"]
    objects += [("source", s) for s in contents.data_sources]
    views = [*contents.feature_views, *contents.stream_feature_views, *contents.label_views]
    objects += [("view", v) for v in views]
    objects += [("on_demand_view", o) for o in contents.on_demand_feature_views]
    objects += [("service", s) for s in contents.feature_services]
    docs: dict[str, DocSpec] = {}
    for kind, obj in objects:
        doc = _doc(obj)
        if doc is not None:
            docs[doc_key(kind, obj.name)] = doc
    for view in [*views, *contents.on_demand_feature_views]:
        for f in getattr(view, "schema", None) or view.features:
            doc = _doc(f)
            if doc is not None:
                docs[doc_key("field", f"{view.name}:{f.name}")] = doc
    return docs


def _logging(service: Any, repo: Path) -> LoggingSpec | None:
    """A FeatureService's LoggingConfig with a file destination (None otherwise; other
    destinations are listed as not used, featureline._feast_unused). The path is
    resolved as Feast's file offline store resolves it: relative to the repo, URIs kept."""
    config = getattr(service, "logging_config", None)
    destination: Any = getattr(config, "destination", None)
    if config is None or type(destination).__name__ != "FileLoggingDestination":
        return None
    path = destination.path if is_uri(destination.path) else str((repo / destination.path).resolve())
    rate = float(config.sample_rate)
    if not 0.0 <= rate <= 1.0:
        raise BadInputError(f"feature service {service.name!r}: logging sample_rate {rate} is not in [0, 1]")
    return LoggingSpec(
        path=path,
        partition_by=tuple(destination.partition_by or ()),
        sample_rate=rate,
        s3_endpoint_override=getattr(destination, "s3_endpoint_override", "") or "",
    )


def convert_repo_contents(
    contents: Any,
    *,
    project: str,
    repo: Path,
    entity_key_serialization_version: int,
    fingerprint: str,
) -> RepoSpec:
    all_views = [*contents.feature_views, *contents.stream_feature_views]
    entities = {e.name: _entity_spec(e, all_views, repo) for e in contents.entities if e.name != "__dummy"}
    views: dict[str, ViewSpec] = {}
    for fv in contents.feature_views:
        views[fv.name] = convert_view(fv, repo, "batch", entities)
    for sfv in contents.stream_feature_views:
        views[sfv.name] = convert_view(sfv, repo, "stream", entities)
    for lv in contents.label_views:
        views[lv.name] = convert_label_view(lv, repo, entities)
    odfvs = {o.name: convert_odfv(o, views) for o in contents.on_demand_feature_views}
    services = {
        fs.name: ServiceSpec(
            name=fs.name,
            projections=tuple(_projection(p, views, odfvs) for p in fs.feature_view_projections),
            logging=_logging(fs, repo),
        )
        for fs in contents.feature_services
    }
    return RepoSpec(
        project=project,
        entities=entities,
        views=views,
        on_demand_views=odfvs,
        services=services,
        entity_key_serialization_version=entity_key_serialization_version,
        source_fingerprint=fingerprint,
        ignored=unused_objects(contents),
        docs=repo_docs(contents),
        permissions=convert_permissions(contents),
    )
