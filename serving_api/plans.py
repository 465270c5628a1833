"""Read plans: what one kind of request reads from Redis, worked out once and cached.

A plan is built from the repo's specs for one (feature refs | feature service, full
feature names) combination: which views to read, their Redis field names (murmur3
hashes, computed once here instead of per request), the RESP bytes of those fields,
the tile sizes and aggregation groups of aggregating views, and the on-demand views
to run. Serving a request then only encodes entity keys and parses replies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from featureline.aggregations import parts_of
from featureline.errors import BadInputError
from featureline.odfv import OnDemandRunner
from featureline.online.feast_format import (
    feature_field,
    redis_key,
    single_key_encoder,
    ts_field,
)
from featureline.semantics import US, window_start_us
from featureline.specs import RepoSpec, ResolvedFeature, ViewSpec, resolve_features

KeyEncoder = Callable[[Sequence[Any]], bytes]


def _resp_bulk(items: Sequence[bytes]) -> bytes:
    return b"".join(b"$%d\r\n%s\r\n" % (len(i), i) for i in items)


def _key_encoder(project: str, view: ViewSpec) -> KeyEncoder:
    """Entity values (in the view's join-key order) -> Feast's Redis key of the view."""
    names = view.join_key_names
    dtypes = tuple(k.dtype for k in view.join_keys)
    if len(names) == 1:
        single = single_key_encoder(project, names[0], dtypes[0])
        return lambda values: single(values[0])
    return lambda values: redis_key(project, names, dtypes, values)


@dataclass(frozen=True)
class PlainRead:
    """HMGET of a latest-value view: its features' fields, then `_ts:{view}`."""

    view: ViewSpec
    features: tuple[str, ...]
    dtypes: tuple[str, ...]
    encode_key: KeyEncoder
    _head: bytes  # "*N\r\n$5\r\nHMGET\r\n"
    _tail: bytes  # the field names, RESP-encoded
    # The view's name and ttl (0: none) copied here: read per request, and a ViewSpec
    # (not compiled) costs a dict lookup per attribute.
    name: str = ""
    ttl_us: int = 0

    @classmethod
    def build(cls, project: str, view: ViewSpec, features: Sequence[str]) -> PlainRead:
        ordered = tuple(f for f in view.feature_names if f in set(features))
        fields = [feature_field(view.name, f) for f in ordered] + [ts_field(view.name)]
        return cls(
            view=view,
            features=ordered,
            dtypes=tuple(view.feature(f).dtype for f in ordered),
            encode_key=_key_encoder(project, view),
            _head=b"*%d\r\n$5\r\nHMGET\r\n" % (len(fields) + 2),
            _tail=_resp_bulk(fields),
            name=view.name,
            ttl_us=view.ttl_s * US,
        )

    def command(self, key: bytes) -> bytes:
        return b"%s$%d\r\n%s\r\n%s" % (self._head, len(key), key, self._tail)


@dataclass(frozen=True)
class PlainGroup:
    """One HMGET per entity for all latest-value views with the same join keys. Feast
    keeps every view of an entity in one hash (its key does not name the view), so
    `user_profile` and `user_last_txn` are one command instead of two: ~1/3 fewer
    Redis commands for a fraud_model_v1 row."""

    reads: tuple[PlainRead, ...]
    offsets: tuple[int, ...]  # where each read's part of the reply starts: fields, then _ts
    join_key_names: tuple[str, ...]
    encode_key: KeyEncoder
    _head: bytes
    _tail: bytes

    @classmethod
    def build(cls, reads: Sequence[PlainRead]) -> PlainGroup:
        offsets = []
        start = 0
        for read in reads:
            offsets.append(start)
            start += len(read.features) + 1
        return cls(
            reads=tuple(reads),
            offsets=tuple(offsets),
            join_key_names=reads[0].view.join_key_names,
            encode_key=reads[0].encode_key,
            _head=b"*%d\r\n$5\r\nHMGET\r\n" % (start + 2),
            _tail=b"".join(r._tail for r in reads),
        )

    def command(self, key: bytes) -> bytes:
        return b"%s$%d\r\n%s\r\n%s" % (self._head, len(key), key, self._tail)


def group_plain_reads(plain: Sequence[PlainRead]) -> tuple[PlainGroup, ...]:
    """Views whose entities have the same Redis key (same join keys and types)."""
    by_key: dict[tuple[tuple[str, str], ...], list[PlainRead]] = {}
    for read in plain:
        signature = tuple((k.name, k.dtype) for k in read.view.join_keys)
        by_key.setdefault(signature, []).append(read)
    return tuple(PlainGroup.build(reads) for reads in by_key.values())


@dataclass(frozen=True)
class AggGroup:
    """Aggregations over one column and window: their tiles are merged once."""

    column: str
    window_s: int
    tile_s: int
    outputs: tuple[tuple[str, str], ...]  # (feature name, function)

    @cached_property  # computed once per plan (plans are cached), not per request
    def parts(self) -> frozenset[str]:
        """What its functions read from the tiles (featureline.aggregations.parts_of)."""
        return parts_of(function for _, function in self.outputs)


@dataclass(frozen=True)
class TileRead:
    """HGETALL of an aggregating view's tile hashes, one per tile size."""

    view: ViewSpec
    features: tuple[str, ...]
    tile_sizes: tuple[int, ...]
    groups: tuple[AggGroup, ...]
    encode_key: KeyEncoder
    project: str
    project_len: int  # Feast's Redis key minus this suffix = the entity key of tile keys

    @classmethod
    def build(cls, project: str, view: ViewSpec, features: Sequence[str]) -> TileRead:
        wanted = set(features)
        aggs = [a for a in view.aggregations if a.name in wanted]
        grouped: dict[tuple[str, int, int], list[tuple[str, str]]] = {}
        for agg in aggs:
            grouped.setdefault((agg.column, agg.window_s, agg.tile_s), []).append((agg.name, agg.function))
        groups = tuple(AggGroup(c, w, t, tuple(outs)) for (c, w, t), outs in grouped.items())
        return cls(
            view=view,
            features=tuple(a.name for a in aggs),
            tile_sizes=tuple(sorted({g.tile_s for g in groups})),
            groups=groups,
            encode_key=_key_encoder(project, view),
            project=project,
            project_len=len(project.encode()),
        )

    @property
    def join_key_names(self) -> tuple[str, ...]:
        return self.view.join_key_names

    def dtype(self, feature: str) -> str:
        return self.view.feature(feature).dtype

    def earliest_start_us(self, tile_s: int, t_us: int) -> int:
        """The earliest tile start any window of this tile size needs at time t."""
        return min(window_start_us(t_us, g.window_s, tile_s) for g in self.groups if g.tile_s == tile_s)


@dataclass(frozen=True)
class OnDemandRead:
    runner: OnDemandRunner
    features: tuple[str, ...]  # the ones this request outputs

    @property
    def name(self) -> str:
        return self.runner.spec.name


@dataclass(frozen=True)
class ReadPlan:
    outputs: tuple[ResolvedFeature, ...]
    output_names: tuple[str, ...]
    plain: tuple[PlainRead, ...]
    plain_groups: tuple[PlainGroup, ...]  # the plain reads, one HMGET per entity key
    tiles: tuple[TileRead, ...]
    on_demand: tuple[OnDemandRead, ...]
    join_keys: dict[str, str]  # join key -> dtype, every key a read view needs
    request_fields: dict[str, str]  # request-source field -> dtype
    entity_keys: dict[str, str]  # every join key of the repo -> dtype (echoed if given)
    views: tuple[str, ...]  # views and on-demand views the request reads (for auth)
    # (view, feature) of each output, copied from `outputs` (specs, not compiled).
    output_refs: tuple[tuple[str, str], ...] = ()


def _needed_features(
    repo: RepoSpec, outputs: Sequence[ResolvedFeature]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """view -> features to read; on-demand view -> features to output."""
    reads: dict[str, list[str]] = {}
    odfvs: dict[str, list[str]] = {}

    def need(view: str, feature: str) -> None:
        items = reads.setdefault(view, [])
        if feature not in items:
            items.append(feature)

    for f in outputs:
        if f.on_demand:
            odfvs.setdefault(f.view, [])
            if f.feature not in odfvs[f.view]:
                odfvs[f.view].append(f.feature)
        else:
            need(f.view, f.feature)
    for name in odfvs:
        for source, features in repo.on_demand_views[name].sources:
            if source in repo.on_demand_views:
                raise BadInputError(
                    f"on-demand view {name!r} reads on-demand view {source!r}; "
                    "serving supports on-demand views over feature views only"
                )
            for feature in features:
                need(source, feature)
    return reads, odfvs


def build_plan(
    repo: RepoSpec,
    runners: dict[str, OnDemandRunner],
    refs: list[str] | None,
    service: str | None,
    full_feature_names: bool,
) -> ReadPlan:
    """Resolve a request's features into a plan (NotFoundError / BadInputError on bad refs)."""
    outputs = tuple(resolve_features(repo, refs, service, full_feature_names=full_feature_names))
    reads, odfvs = _needed_features(repo, outputs)
    plain: list[PlainRead] = []
    tiles: list[TileRead] = []
    join_keys: dict[str, str] = {}
    for view_name, features in reads.items():
        view = repo.view(view_name)
        if not view.online:
            raise BadInputError(f"feature view {view_name!r} is not online (online=False)")
        for key in view.join_keys:
            join_keys[key.name] = key.dtype
        if view.is_aggregating:
            tiles.append(TileRead.build(repo.project, view, features))
        else:
            plain.append(PlainRead.build(repo.project, view, features))
    request_fields: dict[str, str] = {}
    for name in odfvs:
        for field in repo.on_demand_views[name].request_fields:
            request_fields[field.name] = field.dtype
    return ReadPlan(
        outputs=outputs,
        output_names=tuple(f.output_name(full_feature_names) for f in outputs),
        plain=tuple(plain),
        plain_groups=group_plain_reads(plain),
        tiles=tuple(tiles),
        on_demand=tuple(OnDemandRead(runners[n], tuple(fs)) for n, fs in odfvs.items()),
        join_keys=join_keys,
        request_fields=request_fields,
        entity_keys={e.join_key: e.dtype for e in repo.entities.values()},
        views=tuple(dict.fromkeys([*reads, *odfvs])),
        output_refs=tuple((f.view, f.feature) for f in outputs),
    )
