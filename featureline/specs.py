"""Plain typed specs of a Feast repo: what every part of Featureline reads.

The Feast objects are read once (`featureline.repo.load_repo`) and turned into these
frozen dataclasses, which serialize to JSON so that servers and jobs can start
without importing feast (~5 s). Times are whole seconds or microseconds, named so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from featureline.errors import BadInputError, NotFoundError
from featureline.semantics import tile_size_s

# A field's `dtype` is a name of featureline.dtypes.DTYPES (Feast's ValueType, lower case).
ViewKind = Literal["batch", "stream"]


@dataclass(frozen=True)
class FieldSpec:
    name: str
    dtype: str


@dataclass(frozen=True)
class EntitySpec:
    name: str
    join_key: str
    dtype: str


@dataclass(frozen=True)
class FileSourceSpec:
    name: str
    path: str
    timestamp_field: str
    created_timestamp_column: str = ""
    field_mapping: dict[str, str] = field(default_factory=dict)
    # Feast's FileSource option for S3-compatible stores (featureline.object_store).
    s3_endpoint_override: str = ""


@dataclass(frozen=True)
class KafkaSourceSpec:
    name: str
    bootstrap_servers: str
    topic: str
    message_format: Literal["json", "avro"]
    schema: str
    timestamp_field: str
    created_timestamp_column: str = ""
    watermark_delay_s: int = 0
    batch_source: FileSourceSpec | None = None


@dataclass(frozen=True)
class AggregationSpec:
    """A Feast Aggregation, with its output name and tile size resolved (semantics.md 2)."""

    column: str
    function: str  # a name of featureline.aggregations.FUNCTIONS (Feast's, as given)
    window_s: int
    slide_s: int
    name: str

    @property
    def tile_s(self) -> int:
        return tile_size_s(self.window_s, self.slide_s)


@dataclass(frozen=True)
class ViewSpec:
    """A FeatureView or StreamFeatureView.

    `features` are the view's outputs: the schema's non-key fields for a plain view,
    the aggregations' resolved names for a view with aggregations. `input_fields` are
    the schema fields an aggregating view reads from its source.
    """

    name: str
    kind: ViewKind
    entities: tuple[str, ...]
    join_keys: tuple[FieldSpec, ...]
    features: tuple[FieldSpec, ...]
    ttl_s: int
    timestamp_field: str
    created_timestamp_column: str = ""
    batch_source: FileSourceSpec | None = None
    stream_source: KafkaSourceSpec | None = None
    aggregations: tuple[AggregationSpec, ...] = ()
    input_fields: tuple[FieldSpec, ...] = ()
    online: bool = True
    udf_source: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    # Feast Field tags by field name (fields without tags left out): data-quality
    # expectations live there (featureline.expectations).
    field_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    # A Feast LabelView (mutable labels, written by push only): its ConflictPolicy value
    # ("last_write_wins", "labeler_priority", "majority_vote") and labeler column.
    label_policy: str = ""
    labeler_field: str = ""
    # The Feast PushSource that feeds the view ("" if none): POST /push names it. The
    # view is served, materialized and written offline from its batch_source.
    push_source: str = ""

    @property
    def join_key_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.join_keys)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def is_aggregating(self) -> bool:
        return bool(self.aggregations)

    @property
    def is_label_view(self) -> bool:
        return bool(self.label_policy)

    def feature(self, name: str) -> FieldSpec:
        for f in self.features:
            if f.name == name:
                return f
        raise NotFoundError(
            f"feature view {self.name!r} has no feature {name!r}; it has: {', '.join(self.feature_names)}"
        )

    def tile_sizes_s(self) -> tuple[int, ...]:
        return tuple(sorted({a.tile_s for a in self.aggregations}))


@dataclass(frozen=True)
class OnDemandViewSpec:
    """An OnDemandFeatureView: a udf over other views' features and request fields."""

    name: str
    mode: str  # python | pandas
    sources: tuple[tuple[str, tuple[str, ...]], ...]  # (view name, features it reads)
    request_fields: tuple[FieldSpec, ...]
    features: tuple[FieldSpec, ...]
    udf_name: str
    udf_source: str

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)


@dataclass(frozen=True)
class ProjectionSpec:
    view: str
    alias: str  # Feast's name_to_use(): the prefix of full feature names
    features: tuple[str, ...]


@dataclass(frozen=True)
class LoggingSpec:
    """A feature service's Feast LoggingConfig with a FileLoggingDestination: where
    `featureline serve` writes the vectors it serves (serving_api.feature_log)."""

    path: str  # absolute, or an object-store URI kept as written (as Feast resolves it)
    partition_by: tuple[str, ...] = ()
    sample_rate: float = 1.0
    s3_endpoint_override: str = ""


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    projections: tuple[ProjectionSpec, ...]
    logging: LoggingSpec | None = None  # None: the service's served vectors are not logged


@dataclass(frozen=True)
class IgnoredSpec:
    """An object `feast apply` registers that Featureline does not act on, and why."""

    kind: str
    name: str
    why: str


@dataclass(frozen=True)
class PermissionSpec:
    """A Feast Permission, as `featureline serve` enforces it with `auth: oidc`: the
    policy (who) and the served objects it lets read online (what). Which objects it
    covers is decided at parse time by Feast's own matching (types, name_patterns,
    required_tags, READ_ONLINE in its actions), so serving never imports feast."""

    name: str
    # allow_all | roles | groups | namespaces | groups_namespaces (Feast's policy classes)
    policy: str
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    views: tuple[str, ...] = ()  # feature views and on-demand views it grants READ_ONLINE on
    services: tuple[str, ...] = ()  # feature services it grants READ_ONLINE on


@dataclass(frozen=True)
class DocSpec:
    """What a Feast object says about itself for people (description, owner, tags): read
    by the web UI (featureline.ui), never by a job. Kept apart from the object specs so
    that documentation stays out of every definition fingerprint."""

    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict)


def doc_key(kind: str, name: str) -> str:
    """RepoSpec.docs's key: kind is entity, source, view, on_demand_view, service or
    field; a field's name is "view:feature"."""
    return f"{kind}/{name}"


@dataclass(frozen=True)
class RepoSpec:
    project: str
    entities: dict[str, EntitySpec]
    views: dict[str, ViewSpec]
    on_demand_views: dict[str, OnDemandViewSpec]
    services: dict[str, ServiceSpec]
    entity_key_serialization_version: int = 3
    source_fingerprint: str = ""
    ignored: tuple[IgnoredSpec, ...] = ()
    # doc_key(kind, name) -> its documentation; only objects that have some.
    docs: dict[str, DocSpec] = field(default_factory=dict)
    # Every Feast Permission of the repo: with none, Feast lets any authenticated user
    # read everything; with some, only what one of them grants.
    permissions: tuple[PermissionSpec, ...] = ()

    def doc(self, kind: str, name: str) -> DocSpec:
        return self.docs.get(doc_key(kind, name)) or DocSpec()

    def views_of_push_source(self, name: str) -> list[ViewSpec]:
        """The views a PushSource feeds, by name (NotFoundError naming the known ones)."""
        views = [v for _, v in sorted(self.views.items()) if v.push_source == name]
        if not views:
            known = ", ".join(sorted({v.push_source for v in self.views.values() if v.push_source}))
            raise NotFoundError(f"unknown push source {name!r}; known push sources: {known or 'none'}")
        return views

    def view(self, name: str) -> ViewSpec:
        try:
            return self.views[name]
        except KeyError:
            known = ", ".join(sorted(self.views) + sorted(self.on_demand_views))
            raise NotFoundError(f"unknown feature view {name!r}; known views: {known}") from None

    def service(self, name: str) -> ServiceSpec:
        try:
            return self.services[name]
        except KeyError:
            known = ", ".join(sorted(self.services)) or "none"
            raise NotFoundError(f"unknown feature service {name!r}; known services: {known}") from None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RepoSpec:
        return _repo_from_dict(json.loads(text))


def definition_fingerprint(obj: Any) -> str:
    """A stable hash of a spec's definition (used to tie a model to its features)."""
    payload = json.dumps(dataclasses.asdict(obj), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _fields(items: list[dict[str, Any]]) -> tuple[FieldSpec, ...]:
    return tuple(FieldSpec(**i) for i in items)


def _file_source(d: dict[str, Any] | None) -> FileSourceSpec | None:
    return None if d is None else FileSourceSpec(**d)


def _logging(d: dict[str, Any] | None) -> LoggingSpec | None:
    return None if d is None else LoggingSpec(**{**d, "partition_by": tuple(d["partition_by"])})


def _view_from_dict(d: dict[str, Any]) -> ViewSpec:
    stream = d["stream_source"]
    if stream is not None:
        stream = KafkaSourceSpec(**{**stream, "batch_source": _file_source(stream["batch_source"])})
    return ViewSpec(
        **{
            **d,
            "entities": tuple(d["entities"]),
            "join_keys": _fields(d["join_keys"]),
            "features": _fields(d["features"]),
            "input_fields": _fields(d["input_fields"]),
            "aggregations": tuple(AggregationSpec(**a) for a in d["aggregations"]),
            "batch_source": _file_source(d["batch_source"]),
            "stream_source": stream,
        }
    )


def _repo_from_dict(d: dict[str, Any]) -> RepoSpec:
    odfvs = {
        name: OnDemandViewSpec(
            **{
                **o,
                "sources": tuple((v, tuple(fs)) for v, fs in o["sources"]),
                "request_fields": _fields(o["request_fields"]),
                "features": _fields(o["features"]),
            }
        )
        for name, o in d["on_demand_views"].items()
    }
    services = {
        name: ServiceSpec(
            name=s["name"],
            projections=tuple(
                ProjectionSpec(p["view"], p["alias"], tuple(p["features"])) for p in s["projections"]
            ),
            logging=_logging(s.get("logging")),
        )
        for name, s in d["services"].items()
    }
    return RepoSpec(
        project=d["project"],
        entities={k: EntitySpec(**v) for k, v in d["entities"].items()},
        views={k: _view_from_dict(v) for k, v in d["views"].items()},
        on_demand_views=odfvs,
        services=services,
        entity_key_serialization_version=d["entity_key_serialization_version"],
        source_fingerprint=d["source_fingerprint"],
        ignored=tuple(IgnoredSpec(**i) for i in d.get("ignored", ())),
        docs={k: DocSpec(**v) for k, v in d.get("docs", {}).items()},
        permissions=tuple(
            PermissionSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in p.items()})  # type: ignore[arg-type]
            for p in d.get("permissions", ())
        ),
    )


@dataclass(frozen=True)
class ResolvedFeature:
    """One requested feature: the view (or on-demand view) that computes it, and the
    column name it gets in results (`feature`, or `alias__feature` with full names)."""

    view: str
    alias: str
    feature: str
    dtype: str
    on_demand: bool = False

    def output_name(self, full_feature_names: bool) -> str:
        return f"{self.alias}__{self.feature}" if full_feature_names else self.feature

    @property
    def ref(self) -> str:
        return f"{self.alias}:{self.feature}"


def resolve_features(
    repo: RepoSpec,
    refs: list[str] | None = None,
    service: str | None = None,
    *,
    full_feature_names: bool = False,
) -> list[ResolvedFeature]:
    """Feature refs ("view:feature") or a feature service -> resolved features, in order.

    Exactly one of refs / service. Unknown views or features raise NotFoundError; two
    features with one output name (without full names) raise BadInputError, as Feast does.
    """

    if (refs is None) == (service is None):
        raise BadInputError("give either feature refs or a feature service, not both or neither")
    pairs: list[tuple[str, str, str]] = []  # (view, alias, feature)
    if service is not None:
        for proj in repo.service(service).projections:
            pairs += [(proj.view, proj.alias, f) for f in proj.features]
    else:
        for ref in refs or []:
            view, sep, feature = ref.partition(":")
            if not sep or not view or not feature:
                raise BadInputError(f"feature ref {ref!r} is not of the form view:feature")
            pairs.append((view, view, feature))
    out: list[ResolvedFeature] = []
    for view_name, alias, feature in pairs:
        if view_name in repo.on_demand_views:
            odfv = repo.on_demand_views[view_name]
            match = [f for f in odfv.features if f.name == feature]
            if not match:
                raise NotFoundError(
                    f"on-demand view {view_name!r} has no feature {feature!r}; "
                    f"it has: {', '.join(odfv.feature_names)}"
                )
            out.append(ResolvedFeature(view_name, alias, feature, match[0].dtype, True))
        else:
            spec = repo.view(view_name).feature(feature)
            out.append(ResolvedFeature(view_name, alias, feature, spec.dtype))
    names = [f.output_name(full_feature_names) for f in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BadInputError(
            f"feature names collide: {', '.join(dupes)}; use full feature names "
            "(--full-feature-names) to tell them apart"
        )
    return out
