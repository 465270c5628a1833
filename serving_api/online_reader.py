"""The online read path: entity rows -> one pipelined Redis round trip -> a FeatureFrame.

- Plain views: Feast's own Redis layout (featureline.online.feast_format), HMGET of the
  requested features plus `_ts:{view}`. No `_ts` field: NOT_FOUND. A value whose event
  time is older than t - ttl: null with OUTSIDE_MAX_AGE (semantics.md 1; Feast 0.67
  returns it as PRESENT). A stored null: NULL_VALUE.
- Aggregating views: HGETALL of the entity's tile hash per tile size
  (featureline.online.tiles), merged at request time t over [start(t), t]
  (semantics.md 2). An empty window gives the function's empty value (count 0, mean
  null). The event time reported is the start of the newest tile that contributed.
- On-demand views: their udf runs on the values above plus the request fields.

Every entity of every view is read in the same round trip; entities repeated in one
request are read once. `prepare` and `assemble` are pure (tested without Redis);
`OnlineReader.read` adds the I/O.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from featureline.errors import BadInputError
from featureline.online.feast_format import decode_timestamp
from featureline.online.tiles import decode_tile, tile_key, window_state
from featureline.semantics import US, tile_start_us, window_start_us
from featureline.specs import RepoSpec
from serving_api.entities import coerce_column, row_count
from serving_api.frame import (
    NOT_FOUND,
    NULL_VALUE,
    OUTSIDE_MAX_AGE,
    PRESENT,
    FeatureFrame,
    FrameColumn,
)
from serving_api.odfv import OnDemandRunner
from serving_api.plans import PlainRead, ReadPlan, TileRead, build_plan
from serving_api.redis_client import RedisClient

# Decoded tiles keyed by their raw bytes: a tile's bytes fully determine its states,
# so equal bytes can share one decode (JSON + big-int sums, ~5 us) across requests.
# Closed tiles never change, so hot entities hit this; 50k entries is ~50 MB at most.
_TILE_CACHE: dict[bytes, Any] = {}
_TILE_CACHE_MAX = 50_000
_PLAN_CACHE_MAX = 1024


@dataclass
class PreparedRead:
    """A validated request, its Redis commands, and how to map replies back to rows."""

    plan: ReadPlan
    n_rows: int
    keys: dict[str, list[Any]]  # join key -> coerced values
    request_values: dict[str, list[Any]]
    echoed: list[tuple[str, str, list[Any]]]  # (join key, dtype, values) in request order
    # Per view read, in plan order: the unique entity keys and each row's index into them.
    unique_keys: list[list[bytes]] = field(default_factory=list)
    row_index: list[list[int] | None] = field(default_factory=list)
    payload: bytes = b""
    expected_replies: int = 0


def _unique(keys: list[bytes]) -> tuple[list[bytes], list[int] | None]:
    """Unique keys in first-seen order, and each row's index (None: all were unique)."""
    positions: dict[bytes, int] = {}
    index = [positions.setdefault(k, len(positions)) for k in keys]
    if len(positions) == len(keys):
        return keys, None
    return list(positions), index


def _view_keys(read: PlainRead | TileRead, keys: dict[str, list[Any]], n: int) -> list[bytes]:
    names = read.view.join_key_names
    columns = [keys[name] for name in names]
    encode = read.encode_key
    if len(columns) == 1:
        col = columns[0]
        return [encode((col[i],)) for i in range(n)]
    return [encode(values) for values in zip(*columns, strict=True)]


def prepare(plan: ReadPlan, entities: Mapping[str, Sequence[Any]]) -> PreparedRead:
    """Validate the entity columns against the plan and pack its Redis commands."""
    n = row_count(entities)
    missing = [k for k in plan.join_keys if k not in entities]
    if missing:
        views = [r.view for r in plan.plain] + [r.view for r in plan.tiles]
        needed_by = [v.name for v in views if set(missing) & set(v.join_key_names)]
        raise BadInputError(
            f"missing join key column(s) {', '.join(missing)} needed by view(s) {', '.join(needed_by)}"
        )
    absent = [f for f in plan.request_fields if f not in entities]
    if absent:
        raise BadInputError(
            f"missing request field(s) {', '.join(absent)} needed by on-demand view(s) "
            f"{', '.join(o.name for o in plan.on_demand)}"
        )
    keys = {k: coerce_column(k, dt, entities[k], False) for k, dt in plan.join_keys.items()}
    request_values = {f: coerce_column(f, dt, entities[f], True) for f, dt in plan.request_fields.items()}
    echoed = [
        (name, plan.entity_keys[name], keys.get(name) or list(entities[name]))
        for name in entities
        if name in plan.entity_keys and name not in plan.request_fields
    ]
    prepared = PreparedRead(plan, n, keys, request_values, echoed)
    parts: list[bytes] = []
    for read in plan.plain:
        unique, index = _unique(_view_keys(read, keys, n))
        prepared.unique_keys.append(unique)
        prepared.row_index.append(index)
        command = read.command
        parts += [command(k) for k in unique]
        prepared.expected_replies += len(unique)
    for tread in plan.tiles:
        unique, index = _unique(_view_keys(tread, keys, n))
        prepared.unique_keys.append(unique)
        prepared.row_index.append(index)
        for key in unique:
            entity = key[: len(key) - tread.project_len]
            for tile_s in tread.tile_sizes:
                tkey = tile_key(tread.project, tread.view.name, tile_s, entity)
                parts.append(b"*2\r\n$7\r\nHGETALL\r\n$%d\r\n%s\r\n" % (len(tkey), tkey))
        prepared.expected_replies += len(unique) * len(tread.tile_sizes)
    prepared.payload = b"".join(parts)
    return prepared


def _expand(values: list[Any], index: list[int] | None) -> list[Any]:
    return values if index is None else [values[i] for i in index]


def _plain_columns(
    read: PlainRead, replies: list[Any], index: list[int] | None, t_us: int
) -> dict[str, FrameColumn]:
    """Columns of one latest-value view from its HMGET replies (one per unique key)."""
    ttl_us = read.view.ttl_s * US
    key_status: list[int] = []
    key_event: list[int] = []
    for reply in replies:
        ts = reply[-1]
        if ts is None:
            key_status.append(NOT_FOUND)
            key_event.append(0)
            continue
        event_us = decode_timestamp(ts) or 0
        key_event.append(event_us)
        key_status.append(OUTSIDE_MAX_AGE if ttl_us and event_us < t_us - ttl_us else PRESENT)
    event = _expand(key_event, index)
    out: dict[str, FrameColumn] = {}
    for pos, (feature, dtype) in enumerate(zip(read.features, read.dtypes, strict=True)):
        raws = [
            (reply[pos] or None) if st == PRESENT else None
            for reply, st in zip(replies, key_status, strict=True)
        ]
        statuses = [
            st if st != PRESENT else (PRESENT if raw else NULL_VALUE)
            for raw, st in zip(raws, key_status, strict=True)
        ]
        out[feature] = FrameColumn(
            feature,
            dtype,
            _expand(statuses, index),
            event,
            raw=_expand(raws, index),
            view=read.view.name,
        )
    return out


def _decode_tile_cached(raw: bytes) -> Any:
    states = _TILE_CACHE.get(raw)
    if states is None:
        if len(_TILE_CACHE) >= _TILE_CACHE_MAX:
            _TILE_CACHE.clear()
        states = _TILE_CACHE[raw] = decode_tile(raw)
    return states


def _entity_tiles(read: TileRead, replies: Sequence[Any], t_us: int) -> dict[int, list[tuple[int, Any]]]:
    """tile size -> (tile_start_s, states) of one entity's tiles that a window can use."""
    by_size: dict[int, list[tuple[int, Any]]] = {}
    for tile_s, flat in zip(read.tile_sizes, replies, strict=True):
        tiles = by_size[tile_s] = []
        if not flat:
            continue
        lo = read.earliest_start_us(tile_s, t_us)
        hi = tile_start_us(t_us, tile_s)
        for i in range(0, len(flat), 2):
            start_s = int(flat[i].partition(b":")[0])
            if lo <= start_s * US <= hi:
                tiles.append((start_s, _decode_tile_cached(flat[i + 1])))
    return by_size


def _tile_columns(
    read: TileRead, replies: list[Any], index: list[int] | None, t_us: int
) -> dict[str, FrameColumn]:
    per_key = len(read.tile_sizes)
    values: dict[str, list[Any]] = {f: [] for f in read.features}
    newest: list[int] = []
    for k in range(len(replies) // per_key if per_key else 0):
        by_size = _entity_tiles(read, replies[k * per_key : (k + 1) * per_key], t_us)
        latest = 0
        for group in read.groups:
            tiles = by_size[group.tile_s]
            state = window_state(group.column, group.window_s, group.tile_s, tiles, t_us)
            for name, function in group.outputs:
                values[name].append(state.result(function))
            if state.count:
                lo = window_start_us(t_us, group.window_s, group.tile_s)
                starts = [s * US for s, _ in tiles if s * US >= lo]
                latest = max(latest, *starts)
        newest.append(latest)
    event = _expand(newest, index)
    return {
        f: FrameColumn.from_values(f, read.dtype(f), _expand(vals, index), event)
        for f, vals in values.items()
    }


def assemble(prepared: PreparedRead, replies: list[Any], t_us: int) -> FeatureFrame:
    """Turn Redis replies into the request's frame (pure: no I/O)."""
    plan = prepared.plan
    frame = FeatureFrame(prepared.n_rows, t_us)
    by_view: dict[str, dict[str, FrameColumn]] = {}
    pos = slot = 0
    for read in plan.plain:
        count = len(prepared.unique_keys[slot])
        index = prepared.row_index[slot]
        by_view[read.view.name] = _plain_columns(read, replies[pos : pos + count], index, t_us)
        pos += count
        slot += 1
    for tread in plan.tiles:
        count = len(prepared.unique_keys[slot]) * len(tread.tile_sizes)
        index = prepared.row_index[slot]
        by_view[tread.view.name] = _tile_columns(tread, replies[pos : pos + count], index, t_us)
        pos += count
        slot += 1
    for od in plan.on_demand:
        by_view[od.name] = _run_on_demand(od.runner, prepared, by_view)
    for name, dtype, values in prepared.echoed:
        frame.key_columns.append(
            FrameColumn(name, dtype, [PRESENT] * len(values), [0] * len(values), _values=values)
        )
    for feature, out_name in zip(plan.outputs, plan.output_names, strict=True):
        col = by_view[feature.view][feature.feature]
        frame.columns.append(
            FrameColumn(out_name, col.dtype, col.statuses, col.event_us, col.raw, col._values, col.view)
        )
    return frame


def _run_on_demand(
    runner: OnDemandRunner, prepared: PreparedRead, by_view: dict[str, dict[str, FrameColumn]]
) -> dict[str, FrameColumn]:
    inputs: dict[str, list[Any]] = dict(prepared.keys)
    for source, features in runner.spec.sources:
        for feature in features:
            values = by_view[source][feature].values
            inputs[feature] = values
            inputs[f"{source}__{feature}"] = values
    inputs.update(prepared.request_values)
    out = runner.run(inputs, prepared.n_rows)
    dtypes = {f.name: f.dtype for f in runner.spec.features}
    return {name: FrameColumn.from_values(name, dtypes[name], vals) for name, vals in out.items()}


class OnlineReader:
    """Plans (cached) + one Redis client: what the REST and gRPC servers call."""

    def __init__(self, repo: RepoSpec, redis: RedisClient) -> None:
        self.repo = repo
        self.redis = redis
        # Every udf is compiled at startup, so a broken one stops the server at once.
        self.runners = {n: OnDemandRunner.build(s) for n, s in repo.on_demand_views.items()}
        self._plans: dict[tuple[Any, ...], ReadPlan] = {}

    def plan(self, refs: Sequence[str] | None, service: str | None, full_feature_names: bool) -> ReadPlan:
        key = (tuple(refs) if refs is not None else None, service, full_feature_names)
        plan = self._plans.get(key)
        if plan is None:
            refs_list = list(refs) if refs is not None else None
            plan = build_plan(self.repo, self.runners, refs_list, service, full_feature_names)
            if len(self._plans) >= _PLAN_CACHE_MAX:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    async def read(
        self,
        plan: ReadPlan,
        entities: Mapping[str, Sequence[Any]],
        *,
        timeout_s: float | None = None,
        t_us: int | None = None,
    ) -> FeatureFrame:
        prepared = prepare(plan, entities)
        if t_us is None:
            t_us = time.time_ns() // 1000
        replies: list[Any] = []
        if prepared.expected_replies:
            replies = await self.redis.execute_packed(prepared.payload, prepared.expected_replies, timeout_s)
        return assemble(prepared, replies, t_us)
