"""What a historical retrieval reads: requested features grouped by view, each view's
Parquet source checked, and the aggregations grouped by window.

Engines get a `RetrievalPlan` and return raw columns with the internal names defined
here (`plain_column`, `agg_column`); `batch.historical.finish` turns those into the
output columns. Internal names are made of indices, so user column names never need
quoting rules beyond `quote`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from featureline.aggregations import SumTerm, parts_of, sum_terms
from featureline.batch.historical.aggregations import tile_starts_us, window_starts_us
from featureline.batch.historical.entity_df import ROW_ID, ROW_TS, EntityFrame, key_column
from featureline.errors import BadInputError, NotFoundError
from featureline.object_store import Location
from featureline.specs import AggregationSpec, RepoSpec, ResolvedFeature, ViewSpec


@dataclass(frozen=True)
class SourceInfo:
    """A view's Parquet source: where, and which file column holds each of our names."""

    path: Location  # a local path or an object-store URI
    timestamp: str  # file column of the event time
    created: str | None  # file column of the created time
    columns: dict[str, str]  # our name (after field_mapping) -> file column
    schema: pa.Schema  # of the files (no partition columns)
    has_files: bool

    @property
    def is_dir(self) -> bool:
        return self.path.is_dir()

    @property
    def is_remote(self) -> bool:
        """On an object store: engines read it through pyarrow's filesystems."""
        return self.path.is_uri


@dataclass(frozen=True)
class ColumnAggs:
    """One input column's aggregates needed in one window group."""

    column: str
    index: int  # position among the view's aggregated columns (for internal names)
    functions: frozenset[str]

    @property
    def parts(self) -> frozenset[str]:
        """What its functions read (featureline.aggregations.parts_of)."""
        return parts_of(self.functions)

    @property
    def sum_terms(self) -> tuple[SumTerm, ...]:
        """The exact sums it needs, each summed through integer limbs."""
        return sum_terms(self.parts)


@dataclass(frozen=True)
class WindowGroup:
    """Aggregations of one view over one (window, tile): one range join each."""

    index: int
    window_s: int
    tile_s: int
    columns: tuple[ColumnAggs, ...]

    @property
    def start_column(self) -> str:
        return window_start_column(self.window_s, self.tile_s)

    @property
    def head_column(self) -> str:
        """The request row's own tile start, floor(t / s) * s: the head of its window."""
        return tile_start_column(self.tile_s)

    @property
    def event_tile_column(self) -> str:
        """The event's tile start (a column of the events relation)."""
        return tile_start_column(self.tile_s)


@dataclass(frozen=True)
class ViewRequest:
    index: int
    view: ViewSpec
    source: SourceInfo
    outputs: tuple[tuple[str, str], ...]  # (feature, output column), in request order
    keys: tuple[str, ...]  # internal key column names in the narrow entity table
    groups: tuple[WindowGroup, ...] = ()

    @property
    def features(self) -> tuple[str, ...]:
        """Distinct plain features to read (aggregating views: none)."""
        return tuple(dict.fromkeys(f for f, _ in self.outputs))

    def aggregation(self, feature: str) -> AggregationSpec:
        return next(a for a in self.view.aggregations if a.name == feature)

    def agg_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.column for g in self.groups for c in g.columns))


@dataclass(frozen=True)
class RetrievalPlan:
    entities: EntityFrame
    narrow: pa.Table  # ROW_ID, ROW_TS, key columns, window start columns
    views: tuple[ViewRequest, ...]
    output_names: tuple[str, ...] = field(default=())


def quote(name: str) -> str:
    """A SQL identifier for DuckDB and Spark SQL alike."""
    return '"' + name.replace('"', '""') + '"'


def plain_column(view: int, feature: int) -> str:
    return f"v{view}_f{feature}"


def agg_column(view: int, group: int, column: int, kind: str) -> str:
    """kind: count | min | max | distinct | <tag><i> (the sum of limb i of the SumTerm
    with that tag, featureline.aggregations)."""
    return f"v{view}_g{group}_c{column}_{kind}"


def window_start_column(window_s: int, tile_s: int) -> str:
    return f"__fl_start_{window_s}_{tile_s}"


def tile_start_column(tile_s: int) -> str:
    return f"__fl_tile_{tile_s}"


def key_name(index: int) -> str:
    return f"__fl_k{index}"


def build_plan(
    repo: RepoSpec,
    resolved: Sequence[ResolvedFeature],
    entities: EntityFrame,
    full_feature_names: bool,
) -> RetrievalPlan:
    """Group features by view, check every view's keys and source, build the narrow
    entity table the engines join."""
    by_view: dict[str, list[tuple[str, str]]] = {}
    for feat in resolved:
        if feat.on_demand:
            raise BadInputError(
                f"feature {feat.ref!r} comes from on-demand view {feat.view!r}; historical "
                "retrieval computes stored and windowed features only"
            )
        by_view.setdefault(feat.view, []).append((feat.feature, feat.output_name(full_feature_names)))
    outputs = [name for pairs in by_view.values() for _, name in pairs]
    clash = sorted(set(outputs) & set(entities.table.column_names))
    if clash:
        raise BadInputError(
            f"feature column(s) {', '.join(map(repr, clash))} collide with entity frame "
            "columns; rename them or use --full-feature-names"
        )
    narrow_cols: dict[str, pa.ChunkedArray] = {
        ROW_ID: pa.chunked_array([np.arange(entities.num_rows, dtype=np.int64)]),
        ROW_TS: pa.chunked_array([entities.ts_us]),
    }
    key_index: dict[tuple[str, str], str] = {}
    views = []
    for i, (name, pairs) in enumerate(by_view.items()):
        view = repo.view(name)
        keys = []
        for key in view.join_keys:
            internal = key_index.setdefault((key.name, key.dtype), key_name(len(key_index)))
            if internal not in narrow_cols:
                narrow_cols[internal] = key_column(entities, key.name, key.dtype, view.name)
            keys.append(internal)
        views.append(_view_request(i, view, tuple(pairs), tuple(keys)))
    for group in {(g.window_s, g.tile_s) for v in views for g in v.groups}:
        starts = window_starts_us(entities.ts_us, *group)
        narrow_cols[window_start_column(*group)] = pa.chunked_array([starts])
    for tile_s in {g.tile_s for v in views for g in v.groups}:
        narrow_cols[tile_start_column(tile_s)] = pa.chunked_array([tile_starts_us(entities.ts_us, tile_s)])
    return RetrievalPlan(
        entities=entities,
        narrow=pa.table(narrow_cols),
        views=tuple(views),
        output_names=tuple(outputs),
    )


def _view_request(
    index: int, view: ViewSpec, pairs: tuple[tuple[str, str], ...], keys: tuple[str, ...]
) -> ViewRequest:
    groups: tuple[WindowGroup, ...] = ()
    if view.is_aggregating:
        groups = _window_groups(view, [f for f, _ in pairs])
        needed = list(dict.fromkeys(c.column for g in groups for c in g.columns))
    else:
        needed = list(dict.fromkeys(f for f, _ in pairs))
    source = inspect_source(view, needed)
    return ViewRequest(index, view, source, pairs, keys, groups)


def _window_groups(view: ViewSpec, features: list[str]) -> tuple[WindowGroup, ...]:
    aggs = [next(a for a in view.aggregations if a.name == f) for f in features]
    column_index = {c: i for i, c in enumerate(dict.fromkeys(a.column for a in aggs))}
    by_window: dict[tuple[int, int], dict[str, set[str]]] = {}
    for agg in aggs:
        cols = by_window.setdefault((agg.window_s, agg.tile_s), {})
        cols.setdefault(agg.column, set()).add(agg.function)
    return tuple(
        WindowGroup(
            index=gi,
            window_s=w,
            tile_s=s,
            columns=tuple(ColumnAggs(c, column_index[c], frozenset(fns)) for c, fns in cols.items()),
        )
        for gi, ((w, s), cols) in enumerate(by_window.items())
    )


def inspect_source(view: ViewSpec, needed: list[str]) -> SourceInfo:
    """Check that the view's Parquet source exists and holds every column we read."""
    spec = view.batch_source
    if spec is None:
        raise BadInputError(
            f"feature view {view.name!r} has no file (Parquet) batch source to read history from"
        )
    path = Location.of(spec)
    if not path.exists():
        raise NotFoundError(
            f"feature view {view.name!r}: its source {str(path)!r} does not exist (no data yet?)"
        )
    mapping = dict(spec.field_mapping)
    inverse = {ours: theirs for theirs, ours in mapping.items()}
    created = view.created_timestamp_column or spec.created_timestamp_column or None
    dataset = path.dataset()
    schema = dataset.schema
    ours = [*(k.name for k in view.join_keys), *needed]
    columns = {name: inverse.get(name, name) for name in ours}
    wanted = {**columns, "event timestamp": spec.timestamp_field}
    if created:
        wanted["created timestamp"] = created
    has_files = bool(dataset.files)
    for role, column in wanted.items():
        if has_files and column not in schema.names:
            raise BadInputError(
                f"feature view {view.name!r}: its source {str(path)!r} has no column {column!r} "
                f"({role if role.endswith('timestamp') else 'for ' + repr(role)})"
            )
    return SourceInfo(path, spec.timestamp_field, created, columns, schema, has_files)
