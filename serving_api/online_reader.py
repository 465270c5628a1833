"""The online read path: entity rows -> one pipelined Redis round trip -> a FeatureFrame.

- Plain views: Feast's own Redis layout (featureline.online.feast_format), HMGET of the
  requested features plus `_ts:{view}`. No `_ts` field: NOT_FOUND. A value whose event
  time is older than t - ttl: null with OUTSIDE_MAX_AGE (semantics.md 1; Feast 0.67
  returns it as PRESENT). A stored null: NULL_VALUE.
- Aggregating views: HGETALL of the entity's tile hash per tile size, merged at request
  time t (serving_api.tile_windows). The event time reported is the start of the
  newest tile that contributed.
- On-demand views: their udf runs on the values above plus the request fields.

Every entity of every view is read in the same round trip; entities repeated in one
request are read once. `prepare` and `assemble` are pure (tested without Redis);
`OnlineReader.read` adds the I/O.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from featureline.errors import BadInputError
from featureline.odfv import OnDemandRunner
from featureline.online.tiles import (
    TILE_KEY_END,
    tile_key_prefix,
)
from featureline.online.value_proto import NULL_TIMESTAMP_VALUE
from featureline.online_store import OnlineReader as StoreReader
from featureline.serving_api import metrics
from featureline.serving_api.entities import coerce_column, row_count
from featureline.serving_api.frame import (
    NOT_FOUND,
    NULL_VALUE,
    OUTSIDE_MAX_AGE,
    PRESENT,
    FeatureFrame,
    FrameColumn,
)
from featureline.serving_api.memo import memoized
from featureline.serving_api.plans import KeyEncoder, PlainGroup, PlainRead, ReadPlan, TileRead, build_plan
from featureline.serving_api.tile_windows import window_values
from featureline.serving_api.vector_codec import decode_timestamps
from featureline.specs import RepoSpec

_PLAN_CACHE_MAX: Final = 1024
_ENTITY_KEYS: Final[dict[tuple[KeyEncoder, Any], bytes]] = {}
_ENTITY_KEYS_CAP: Final = 200_000


@dataclass(init=False)  # a compiled __init__ (serving_api.frame says why)
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
    commands: list[bytes] = field(default_factory=list)  # RESP-packed, in reply order
    command_keys: list[bytes] = field(default_factory=list)  # the Redis key each reads
    expected_replies: int = 0

    def __init__(self, plan: ReadPlan, n_rows: int, keys: dict[str, list[Any]],
                 request_values: dict[str, list[Any]],
                 echoed: list[tuple[str, str, list[Any]]]) -> None:  # fmt: skip
        self.plan = plan
        self.n_rows = n_rows
        self.keys = keys
        self.request_values = request_values
        self.echoed = echoed
        self.unique_keys = []
        self.row_index = []
        self.commands = []
        self.command_keys = []
        self.expected_replies = 0


@dataclass(init=False)
class PendingRead:
    """A read that needs Redis: its prepared commands and, with a near cache, the
    replies already found there (`missing`: the indexes still to fetch)."""

    prepared: PreparedRead
    t_us: int
    replies: list[Any] = field(default_factory=list)
    versions: list[int | None] = field(default_factory=list)
    missing: list[int] | None = None
    token: tuple[int, int] = (0, 0)

    def __init__(self, prepared: PreparedRead, t_us: int, replies: list[Any] | None = None,
                 versions: list[int | None] | None = None,
                 missing: list[int] | None = None) -> None:  # fmt: skip
        self.prepared = prepared
        self.t_us = t_us  # the time the read is "as of"
        self.replies = replies if replies is not None else []
        self.versions = versions if versions is not None else []
        self.missing = missing
        self.token = (0, 0)  # the near cache's token of the read (NearCache.begin)


def _unique(keys: list[bytes]) -> tuple[list[bytes], list[int] | None]:
    """Unique keys in first-seen order, and each row's index (None: all were unique)."""
    positions: dict[bytes, int] = {}
    index = [positions.setdefault(k, len(positions)) for k in keys]
    if len(positions) == len(keys):
        return keys, None
    return list(positions), index


def _entity_key(encode: KeyEncoder, value: Any) -> bytes:
    """A one-join-key entity's Redis key, memoized for ints and strings (~0.1 us a hit
    against ~1 us to encode; a hot entity recurs across requests). The table's key has
    the encoder (project, join key and type) and only exact ints and strings, which are
    never equal to a value of another type that encodes differently (True == 1)."""
    if type(value) is not int and type(value) is not str:
        return encode((value,))
    memo_key = (encode, value)
    key = _ENTITY_KEYS.get(memo_key)
    return key if key is not None else memoized(_ENTITY_KEYS, _ENTITY_KEYS_CAP, memo_key, _encode_one)


def _encode_one(memo_key: tuple[KeyEncoder, Any]) -> bytes:
    return memo_key[0]((memo_key[1],))


def _view_keys(
    read: PlainGroup | TileRead,
    keys: dict[str, list[Any]],
    done: dict[tuple[str, ...], tuple[list[bytes], list[int] | None]],
) -> tuple[list[bytes], list[int] | None]:
    """Unique Redis keys of a view's entities and each row's index into them. Feast's
    key does not name the view, so views with the same join keys share one encoding."""
    names = read.join_key_names
    if names not in done:
        columns = [keys[name] for name in names]
        encode = read.encode_key
        if len(columns) == 1:
            encoded = [_entity_key(encode, v) for v in columns[0]]
        else:
            encoded = [encode(values) for values in zip(*columns, strict=True)]
        done[names] = _unique(encoded)
    return done[names]


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
    parts = prepared.commands
    command_keys = prepared.command_keys
    done: dict[tuple[str, ...], tuple[list[bytes], list[int] | None]] = {}
    for group in plan.plain_groups:
        unique, index = _view_keys(group, keys, done)
        prepared.unique_keys.append(unique)
        prepared.row_index.append(index)
        command = group.command
        parts += [command(k) for k in unique]
        command_keys += unique
        prepared.expected_replies += len(unique)
    for tread in plan.tiles:
        unique, index = _view_keys(tread, keys, done)
        prepared.unique_keys.append(unique)
        prepared.row_index.append(index)
        prefixes = [tile_key_prefix(tread.project, tread.view.name, s) for s in tread.tile_sizes]
        cut = tread.project_len
        for key in unique:
            entity = key[: len(key) - cut]
            for prefix in prefixes:
                tkey = prefix + entity + TILE_KEY_END
                parts.append(b"*2\r\n$7\r\nHGETALL\r\n$%d\r\n%s\r\n" % (len(tkey), tkey))
                command_keys.append(tkey)
        prepared.expected_replies += len(unique) * len(tread.tile_sizes)
    return prepared


def _expand(values: list[Any], index: list[int] | None) -> list[Any]:
    return values if index is None else [values[i] for i in index]


def _plain_columns(
    read: PlainRead, replies: list[Any], index: list[int] | None, t_us: int, first: int = 0
) -> dict[str, FrameColumn]:
    """Columns of one latest-value view from its HMGET replies (one per unique key); the
    view's fields start at `first` in each reply (views sharing one HMGET, PlainGroup):
    its features, then its `_ts` field.

    Index loops, not zip(..., strict=True) or enumerate(..., start=): mypyc compiles
    only positional zip and enumerate to loops; with keywords each is a call of the
    builtin and an iterator (~15% of a batch-1 request's assembly, measured)."""
    ttl_us = read.ttl_us
    features = read.features
    dtypes = read.dtypes
    ts_pos = first + len(features)
    n = len(replies)
    rows = replies  # HMGET replies: lists from Redis, tuples from the near cache
    stamps = [row[ts_pos] for row in rows]
    found = [i for i in range(n) if stamps[i] is not None]
    key_event = [0] * n
    key_status = [NOT_FOUND] * n
    oldest = t_us - ttl_us if ttl_us else 0
    decoded = decode_timestamps([stamps[i] for i in found])
    for j in range(len(found)):
        i = found[j]
        event_us = decoded[j]
        key_event[i] = event_us
        key_status[i] = OUTSIDE_MAX_AGE if ttl_us and event_us < oldest else PRESENT
    all_found = len(found) == n and OUTSIDE_MAX_AGE not in key_status
    event = _expand(key_event, index)
    name = read.name
    out: dict[str, FrameColumn] = {}
    for k in range(len(features)):
        pos = first + k
        dtype = dtypes[k]
        if all_found:  # the common case: every row is in the store and within ttl
            raws: list[bytes | None] = [row[pos] or None for row in rows]
        else:
            raws = [(rows[i][pos] or None) if key_status[i] == PRESENT else None for i in range(n)]
        if dtype == "unix_timestamp":  # Feast writes a null timestamp as NaT: a null
            raws = [None if raw == NULL_TIMESTAMP_VALUE else raw for raw in raws]
        if all_found:
            statuses = [PRESENT if raw else NULL_VALUE for raw in raws]
        else:
            statuses = [
                key_status[i] if key_status[i] != PRESENT else (PRESENT if raws[i] else NULL_VALUE)
                for i in range(n)
            ]
        feature = features[k]
        out[feature] = FrameColumn(
            feature, dtype, _expand(statuses, index), event, _expand(raws, index), view=name
        )
    return out


def _tile_columns(
    read: TileRead,
    replies: list[Any],
    index: list[int] | None,
    t_us: int,
    versions: Sequence[int | None] | None = None,
) -> dict[str, FrameColumn]:
    """One aggregating view's columns at time t (serving_api.tile_windows), per row."""
    names, columns, newest = window_values(read, replies, t_us, versions)
    event = _expand(newest, index)
    return {
        name: FrameColumn.from_values(name, read.dtype(name), _expand(vals, index), event)
        for name, vals in zip(names, columns, strict=True)
    }


def assemble(
    prepared: PreparedRead, replies: list[Any], t_us: int, versions: list[int | None] | None = None
) -> FeatureFrame:
    """Turn Redis replies into the request's frame (pure: no I/O); `versions`: the
    near cache's version of each reply (None where it has none)."""
    plan = prepared.plan
    frame = FeatureFrame(prepared.n_rows, t_us)
    by_view: dict[str, dict[str, FrameColumn]] = {}
    pos = slot = 0
    for group in plan.plain_groups:
        count = len(prepared.unique_keys[slot])
        index = prepared.row_index[slot]
        group_replies = replies[pos : pos + count]
        reads = group.reads
        offsets = group.offsets
        for k in range(len(reads)):
            read = reads[k]
            by_view[read.name] = _plain_columns(read, group_replies, index, t_us, offsets[k])
        pos += count
        slot += 1
    for tread in plan.tiles:
        count = len(prepared.unique_keys[slot]) * len(tread.tile_sizes)
        index = prepared.row_index[slot]
        view_versions = versions[pos : pos + count] if versions is not None else None
        by_view[tread.view.name] = _tile_columns(
            tread, replies[pos : pos + count], index, t_us, view_versions
        )
        pos += count
        slot += 1
    for od in plan.on_demand:
        by_view[od.name] = _run_on_demand(od.runner, prepared, by_view)
    for name, dtype, values in prepared.echoed:
        frame.key_columns.append(
            FrameColumn(name, dtype, [PRESENT] * len(values), [0] * len(values), _values=values)
        )
    refs = plan.output_refs
    out_names = plan.output_names
    for k in range(len(refs)):
        view, feature = refs[k]
        out_name = out_names[k]
        col = by_view[view][feature]
        if col.name != out_name:  # full feature names, or one feature requested twice
            col = dataclasses.replace(col, name=out_name)
        frame.columns.append(col)
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

    def __init__(self, repo: RepoSpec, redis: StoreReader) -> None:
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
        if t_us is None:
            t_us = time.time_ns() // 1000
        started = self.start(plan, entities, t_us)
        if isinstance(started, FeatureFrame):
            return started
        return await self.finish(started, timeout_s)

    def start(
        self, plan: ReadPlan, entities: Mapping[str, Sequence[Any]], t_us: int
    ) -> FeatureFrame | PendingRead:
        """The frame at once when no Redis round trip is needed (nothing to read, or
        every reply in the near cache), else what `finish` completes. Servers call this
        first so that a request served from memory costs no task and no await."""
        prepared = prepare(plan, entities)
        if not prepared.expected_replies:
            return assemble(prepared, [], t_us)
        cache = self.redis.near_cache
        if cache is None:
            return PendingRead(prepared, t_us)
        found = cache.lookup(prepared.commands)
        missing = [i for i, hit in enumerate(found) if hit is None]
        metrics.observe_near_cache(len(found) - len(missing), len(missing))
        replies = [hit[0] if hit is not None else None for hit in found]
        versions = [hit[1] if hit is not None else None for hit in found]
        if not missing:
            return assemble(prepared, replies, t_us, versions)
        return PendingRead(prepared, t_us, replies, versions, missing)

    def send(self, pending: PendingRead, timeout_s: float | None) -> Awaitable[list[Any]]:
        """The Redis round trip of a started read: the replies `complete` takes (with a
        near cache only the missing ones, tracked from before they are sent). On one
        node a future the connection settles: no coroutine per request."""
        prepared = pending.prepared
        cache = self.redis.near_cache
        if cache is None or pending.missing is None:
            return self.redis.fetch(prepared.commands, prepared.command_keys, timeout_s)
        pending.token = cache.begin()  # before sending: invalidations from now on count
        wanted = [prepared.commands[i] for i in pending.missing]
        return self.redis.fetch(wanted, [prepared.command_keys[i] for i in pending.missing], timeout_s)

    def complete(self, pending: PendingRead, replies: list[Any]) -> FeatureFrame:
        """The frame of a started read from what `send` brought back."""
        cache = self.redis.near_cache
        if cache is None or pending.missing is None:
            return assemble(pending.prepared, replies, pending.t_us)
        prepared = pending.prepared
        missing = pending.missing
        wanted_keys = [prepared.command_keys[i] for i in missing]
        wanted = [prepared.commands[i] for i in missing]
        stored = cache.store(pending.token, list(zip(wanted_keys, wanted, replies, strict=True)))
        for i, reply, version in zip(missing, replies, stored, strict=True):
            pending.replies[i] = reply
            pending.versions[i] = version
        return assemble(prepared, pending.replies, pending.t_us, pending.versions)

    def failed(self, pending: PendingRead) -> None:
        """`send` failed or its replies never came: forget its near-cache token (every
        caller of `send` calls this on any failure, `send`'s own included)."""
        cache = self.redis.near_cache
        if cache is not None and pending.missing is not None:
            cache.abort(pending.token)

    async def finish(self, pending: PendingRead, timeout_s: float | None) -> FeatureFrame:
        """`send` then `complete`, awaited (callers outside the servers' hot path)."""
        try:
            replies = await self.send(pending, timeout_s)
        except BaseException:
            self.failed(pending)
            raise
        return self.complete(pending, replies)
