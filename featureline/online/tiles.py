"""Our Redis layout for windowed aggregations: one hash of tiles per (view, tile size, entity).

    key    fl:tile:{project}:{view}:{tile_s}:{{feast entity key bytes}}
           (the entity in braces: a Redis Cluster hash tag, so all tile hashes of one
           entity share a hash slot and the stream job updates them in ONE script call:
           a reader never sees one tile size of an entity updated and another not, even
           when a primary fails over between two calls; online_store.redis.store)
    field  "{tile_start_s}:{partition}"   (partition: the Kafka partition the events came
           from, so one writer owns each field and rebuilds replace it whole)
    value  JSON {column: [count, sum, min, max, distinct-or-null, *more sums]}
           sum: the exact sum in 2**-1074 units as "{odd part hex}p{shift}" (see
           `encode_units`), or the plain hex of the units written before it;
           more sums: the other exact sums of featureline.aggregations.SUM_TERMS in
           their order, encoded alike, trailing zeros left out (so a column that
           keeps only the plain sum is stored as before, five items)
    field  "_o:{topic}:{partition}" -> the last offset of that partition applied to this
           hash by the stream job (online_store.base.MARK_PREFIX; exactly-once without a
           transaction across keys, streaming.redis_sink); not a tile, readers skip it.
           Only in our tile hashes: Feast-format latest-value hashes never get one.

Readers merge every field whose tile start lies in the window, whatever its partition.
Sums are exact integers (featureline.semantics), so the merge order never matters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from featureline.aggregations import DISTINCT, SUM, SUM_TERMS, AggState, parts_of
from featureline.semantics import US, tile_start_us, window_start_us
from featureline.specs import AggregationSpec, ViewSpec

TILE_PREFIX = b"fl:tile:"
# Closes the entity's hash tag; `tile_key_prefix(...) + entity + TILE_KEY_END` is the key.
TILE_KEY_END = b"}"


def tile_key_prefix(project: str, view: str, tile_s: int) -> bytes:
    """The tile key up to the entity (readers append entity + TILE_KEY_END per row)."""
    if "{" in project or "{" in view:  # the first '{' must open the entity's hash tag
        raise ValueError(f"a project or view name with '{{' cannot name tile keys: {project!r}, {view!r}")
    return b"%s%s:%s:%d:{" % (TILE_PREFIX, project.encode(), view.encode(), tile_s)


def tile_key(project: str, view: str, tile_s: int, entity_key: bytes) -> bytes:
    return tile_key_prefix(project, view, tile_s) + entity_key + TILE_KEY_END


def tile_key_for(project: str, view: str, tile_s: int, feast_redis_key: bytes) -> bytes:
    """tile_key from an entity's Feast Redis key (entity key + project), as the latest-value
    writers compute it: the project suffix is not repeated in the tile key."""
    suffix = project.encode()
    if not feast_redis_key.endswith(suffix):
        raise ValueError(f"{feast_redis_key!r} is not a Redis key of project {project!r}")
    return tile_key(project, view, tile_s, feast_redis_key[: len(feast_redis_key) - len(suffix)])


def tile_field(tile_start_s: int, partition: int) -> bytes:
    return b"%d:%d" % (tile_start_s, partition)


def parse_tile_field(field: bytes) -> tuple[int, int]:
    start, _, partition = field.partition(b":")
    return int(start), int(partition or 0)


def offsets_key(project: str, topic: str, partition: int) -> bytes:
    """Last Kafka offset applied to the online tiles, per partition (exactly-once)."""
    return b"fl:offset:%s:%s:%d" % (project.encode(), topic.encode(), partition)


def tile_parts(view: ViewSpec, tile_s: int) -> dict[str, frozenset[str]]:
    """Columns aggregated at this tile size -> the parts their functions read
    (featureline.aggregations.parts_of): what a tile keeps for each column."""
    functions: dict[str, list[str]] = {}
    for agg in view.aggregations:
        if agg.tile_s == tile_s:
            functions.setdefault(agg.column, []).append(agg.function)
    return {column: parts_of(names) for column, names in functions.items()}


def encode_units(units: int) -> str:
    """An exact sum in 2**-1074 units as "{m:x}p{k}" with units == m << k, m odd.

    A float64 sum in these units is a ~1,100-bit integer whose low ~1,020 bits are
    zeros, so its plain hex is ~270 characters; the odd part is ~15. That is ~3x
    smaller tiles (a user tile of the demo: 360 -> ~110 bytes), and serving reads
    every tile of a window per entity: 5 MB -> ~1.7 MB of Redis replies for a batch
    of 1,000 users of fraud_model_v1."""
    if units == 0:
        return "0"
    shift = (units & -units).bit_length() - 1
    return f"{units >> shift:x}p{shift}"


def decode_units(text: str) -> int:
    """encode_units' inverse; plain hex (the earlier format) is read too."""
    mantissa, sep, shift = text.partition("p")
    return int(mantissa, 16) << int(shift) if sep else int(mantissa, 16)


_MORE = SUM_TERMS[1:]  # sums stored after the five fixed items, in this order


def tile_entry(state: AggState) -> list[Any]:
    """One column's entry in a tile: the stored layout, defined here only."""
    distinct = sorted(state.distinct, key=repr) if state.distinct else None
    entry = [state.count, encode_units(state.sum_units), state.min, state.max, distinct]
    more = [state.more.get(t.part, 0) for t in _MORE]
    while more and not more[-1]:
        more.pop()
    return entry + [encode_units(u) for u in more]


def encode_tile(states: Mapping[str, AggState]) -> bytes:
    """The tile JSON, written by orjson: ~1 us instead of ~6 us with json.dumps per tile,
    which is most of the streaming job's cost when every event starts a tile."""
    return orjson.dumps({col: tile_entry(s) for col, s in states.items()})


def _more_units(rest: Sequence[Any]) -> dict[str, int]:
    return {t.part: decode_units(text) for t, text in zip(_MORE, rest, strict=False) if text != "0"}


def decode_tile(raw: bytes) -> dict[str, AggState]:
    out: dict[str, AggState] = {}
    # orjson: the same values as json.loads at ~1/5 of the time (0.5 vs 3 us a tile);
    # serving decodes every tile in a window at request time.
    for col, (count, sum_hex, vmin, vmax, distinct, *rest) in orjson.loads(raw).items():
        out[col] = AggState(
            count=count,
            sum_units=decode_units(sum_hex),
            min=vmin,
            max=vmax,
            distinct=set(distinct) if distinct else set(),
            more=_more_units(rest),
        )
    return out


def decode_tile_entries(raw: bytes) -> dict[str, tuple[Any, ...]]:
    """A tile as stored: {column: (count, sum text, min, max, distinct-or-None, *more
    sum texts)}, for `merge_entries` (no AggState per tile: the serving path merges ~16
    tiles an entity). Tuples of atoms, so that the serving process's cache of decoded
    tiles is untracked by the garbage collector instead of walked by every full
    collection."""
    return {
        col: (count, units, vmin, vmax, tuple(values) if values else None, *rest)
        for col, (count, units, vmin, vmax, values, *rest) in orjson.loads(raw).items()
    }


def merge_entries(entries: Sequence[Sequence[Any]], parts: frozenset[str]) -> AggState:
    """The merged AggState of encoded tile entries: AggState.merge's rules (counts and
    exact sums add, min of mins, max of maxes, union of distinct sets) over the stored
    form, at ~1/3 of decoding each tile first (tests pin the two equal). Only the sums
    and distinct sets among `parts` (featureline.aggregations.parts_of) are decoded."""
    if not entries:
        return AggState()
    sums = SUM in parts
    distinct = DISTINCT in parts
    more = [(i, t.part) for i, t in enumerate(_MORE, 5) if t.part in parts]
    if len(entries) == 1:  # short windows: one tile, its entry as it is
        count, units, vmin, vmax, values = entries[0][:5]
        state = AggState(
            count,
            decode_units(units) if sums else 0,
            vmin,
            vmax,
            set(values) if distinct and values else set(),
        )
    else:
        counts, unit_texts, mins, maxes, sets = zip(*[e[:5] for e in entries], strict=True)
        present_mins = [v for v in mins if v is not None]
        present_maxes = [v for v in maxes if v is not None]
        state = AggState(
            sum(counts),
            sum(map(decode_units, unit_texts)) if sums else 0,
            min(present_mins) if present_mins else None,
            max(present_maxes) if present_maxes else None,
            set().union(*[v for v in sets if v]) if distinct else set(),
        )
    for i, part in more:
        state.add_units(part, sum(decode_units(e[i]) for e in entries if len(e) > i))
    return state


def merge_tile_states(dst: dict[str, AggState], src: Mapping[str, AggState]) -> None:
    for col, state in src.items():
        if col in dst:
            dst[col].merge(state)
        else:
            merged = AggState()
            merged.merge(state)
            dst[col] = merged


def window_state(
    column: str,
    window_s: int,
    tile_s: int,
    tiles: Iterable[tuple[int, Mapping[str, AggState]]],
    t_us: int,
) -> AggState:
    """The merged state of `column` over the window at serving time t, from
    (tile_start_s, states) pairs of one entity. Aggregations sharing a column and a
    window (count/sum/mean/max of one column) merge once and read several results."""
    lo = window_start_us(t_us, window_s, tile_s)
    hi = tile_start_us(t_us, tile_s)
    total = AggState()
    for start_s, states in tiles:
        if lo <= start_s * US <= hi and column in states:
            total.merge(states[column])
    return total


def window_value(
    agg: AggregationSpec,
    tiles: Iterable[tuple[int, Mapping[str, AggState]]],
    t_us: int,
) -> Any:
    """The aggregate at serving time t from (tile_start_s, states) pairs of one entity."""
    state = window_state(agg.column, agg.window_s, agg.tile_s, tiles, t_us)
    return state.result(agg.function)
