"""Aggregating views at request time: an entity's tile hashes -> its window values.

HGETALL of the entity's tile hash per tile size (featureline.online.tiles), merged at
request time t over [start(t), t] (semantics.md 2) with aggregations.AggState; an
empty window gives the function's empty value (count 0, mean null). serving_api.
online_reader calls `window_values` for each aggregating view a request reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final

from featureline.aggregations import AggState
from featureline.online.tiles import decode_tile_entries, merge_entries, parse_tile_field
from featureline.online_store import MARK_PREFIX
from featureline.semantics import US, tile_start_us, window_start_us
from featureline.serving_api.memo import memoized
from featureline.serving_api.plans import TileRead

# Decoded tiles keyed by their raw bytes: a tile's bytes fully determine its states,
# so equal bytes can share one decode (JSON + big-int sums, ~5 us) across requests.
# Closed tiles never change, so hot entities hit this; 100k entries is ~60 MB at most.
_TILE_CACHE: Final[dict[bytes, Any]] = {}
_TILE_CACHE_CAP: Final = 100_000
# Window values per digest of (an entity's tile bytes, window bounds): ~200 bytes each.
_WINDOW_CACHE: Final[dict[Any, tuple[tuple[Any, ...], int]]] = {}
_WINDOW_CACHE_CAP: Final = 200_000
# Tile fields -> tile start: every entity's tiles start on the same epoch-aligned
# instants, so a few thousand fields recur across all entities (~0.1 vs 0.4 us to parse).
_FIELD_STARTS: Final[dict[bytes, int]] = {}
_FIELD_STARTS_CAP: Final = 100_000
_EMPTY: Final = AggState()  # read only: the state of an empty window
_NEVER: Final = -(1 << 62)  # a tile start no window reaches


def _field_start(name: bytes) -> int:
    # A tile hash also holds the stream job's applied-offset marks (online_store.base
    # MARK_PREFIX): a start before every window, so they are never read as tiles.
    return _NEVER if name.startswith(MARK_PREFIX) else parse_tile_field(name)[0]


def _usable_tiles(flat: Sequence[bytes], lo_s: int, hi_s: int) -> list[tuple[int, Any]]:
    """(tile_start_s, entries) of one tile hash (HGETALL: field, value, ...) that start
    within [lo_s, hi_s]; fields are "{tile_start_s}:{partition}"."""
    tiles = []
    for name, raw in zip(flat[::2], flat[1::2], strict=True):
        # .get first: the hit is the common case and skips a call.
        start_s = _FIELD_STARTS.get(name) or memoized(_FIELD_STARTS, _FIELD_STARTS_CAP, name, _field_start)
        if lo_s <= start_s <= hi_s:
            tile = _TILE_CACHE.get(raw) or memoized(_TILE_CACHE, _TILE_CACHE_CAP, raw, decode_tile_entries)
            tiles.append((start_s, tile))
    return tiles


# (column, tile size index, window start s, [(function, output name)], parts to merge)
_Group = tuple[str, int, int, list[tuple[str, str]], frozenset[str]]


def _window_values(by_size: list[list[tuple[int, Any]]], groups: list[_Group]) -> tuple[tuple[Any, ...], int]:
    """One entity's window values (features in group order) and its newest tile start."""
    out: list[Any] = []
    latest = 0
    for column, j, start_s, outputs, parts in groups:
        starts = []
        entries = []
        for tile_start, tile in by_size[j]:
            if tile_start >= start_s and column in tile:
                starts.append(tile_start)
                entries.append(tile[column])
        if not entries:
            state = _EMPTY
        else:
            state = merge_entries(entries, parts)
            latest = max(latest, max(starts))
        out += [state.result(function) for function, _ in outputs]
    return tuple(out), latest  # a tuple of atoms: untracked by the GC once cached


def _content_key(flats: Sequence[Any], bounds: bytes) -> bytes:
    """A digest of one entity's tile hashes and the window bounds. Fields are ASCII and
    tiles JSON (UTF-8), which never contain the bytes 0xFE / 0xFF used as separators."""
    joined = b"\xfe".join([b"\xff".join(flat) if flat else b"" for flat in flats])
    return hashlib.blake2b(joined + bounds, digest_size=16).digest()


def window_values(
    read: TileRead, replies: list[Any], t_us: int, versions: Sequence[int | None] | None = None
) -> tuple[list[str], list[list[Any]], list[int]]:
    """Window values of one aggregating view at time t, per unique entity: the output
    names, a list of values per name, and each entity's newest contributing tile start
    (microseconds). `replies`: HGETALL replies, `len(read.tile_sizes)` per entity.

    Window bounds (semantics.md 2) are worked out once per request: a tile counts for
    a group when window_start(t) <= its start <= tile_start(t); states merge with
    aggregations.AggState. The values are a pure function of the entity's tile bytes and
    the bounds, so they are memoized under a digest of both: an entity whose tiles did
    not change since its last request (closed tiles never do) costs one hash (~2 us)
    instead of decoding and merging its tiles (~40 us for ~16 tiles). Replies from the
    near cache come with versions that change whenever their bytes do, so those are
    memoized under the versions and the bounds, without hashing the bytes."""
    sizes = read.tile_sizes
    hi_s = [tile_start_us(t_us, s) // US for s in sizes]
    lo_s = [read.earliest_start_us(s, t_us) // US for s in sizes]
    groups: list[_Group] = [
        (g.column, sizes.index(g.tile_s), window_start_us(t_us, g.window_s, g.tile_s) // US,
         [(function, name) for name, function in g.outputs], g.parts)
        for g in read.groups
    ]  # fmt: skip
    bounds = repr((read.view.name, read.features, hi_s, [g[2] for g in groups])).encode()
    names = [name for group in groups for _, name in group[3]]
    columns: list[list[Any]] = [[] for _ in names]
    newest: list[int] = []
    per_key = len(sizes)
    for base in range(0, len(replies), per_key):
        flats = replies[base : base + per_key]
        known = versions[base : base + per_key] if versions is not None else (None,)
        key: Any = (bounds, *known) if None not in known else _content_key(flats, bounds)
        hit = _WINDOW_CACHE.get(key)
        if hit is None:
            by_size = [_usable_tiles(flat, lo_s[j], hi_s[j]) if flat else [] for j, flat in enumerate(flats)]
            if len(_WINDOW_CACHE) >= _WINDOW_CACHE_CAP:
                _WINDOW_CACHE.clear()
            hit = _WINDOW_CACHE[key] = _window_values(by_size, groups)
        for column, value in zip(columns, hit[0], strict=True):
            column.append(value)
        newest.append(hit[1] * US)
    return names, columns, newest
