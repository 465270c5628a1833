"""Synthetic online features and scoring requests for the worker's benchmark and tests.

Fills Redis, in the shared core's formats (Feast's format for latest values through
`LatestValueWriter`, our tile layout for windowed aggregations through `AggState` and
`encode_tile`), with values for every view a FeatureLayout reads, for a fixed domain
of entities, as of `now_us`. What is written is generic over the layout: any service,
any join keys, not a hand-kept copy of the demo's features.

Entity values: int keys are 1..n; string keys are "<key>-<i>". Some entities are left
out of every view on purpose (`MISSING_SHARE`), so that requests also meet NOT_FOUND
features, as they do in production for new cards and merchants.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from featureline.aggregations import AggState
from featureline.online.feast_format import serialize_entity_key, single_key_encoder
from featureline.online.tiles import encode_tile, tile_field, tile_key, tile_parts
from featureline.online.writer import LatestRow, LatestValueWriter
from featureline.semantics import US, tile_start_us
from featureline.serving_api.workers.fingerprint import service_definition
from featureline.serving_api.workers.layout import FeatureLayout
from featureline.specs import RepoSpec, ViewSpec

MISSING_SHARE = 0.05
EVENTS_PER_ENTITY = 6
_CHUNK = 2000  # entities per pipeline round trip
_COUNTRIES = ("DE", "FR", "NL", "US", "GB", "ES")


@dataclass(frozen=True)
class EntityDomain:
    values: dict[str, list[Any]]  # join key -> its entity values

    def sample(self, rng: random.Random, key: str) -> Any:
        return rng.choice(self.values[key])


def entity_domain(layout: FeatureLayout, sizes: dict[str, int], default_size: int = 1000) -> EntityDomain:
    out: dict[str, list[Any]] = {}
    for key, dtype in layout.join_keys:
        n = sizes.get(key, default_size)
        out[key] = list(range(1, n + 1)) if dtype in ("int32", "int64") else [f"{key}-{i}" for i in range(n)]
    return EntityDomain(out)


def _views(repo: RepoSpec, layout: FeatureLayout) -> list[ViewSpec]:
    """Every view the service reads (on-demand views' sources included)."""
    return [repo.views[v.name] for v in service_definition(repo, layout.service).views]


def _value(dtype: str, rng: random.Random, name: str) -> Any:
    if dtype in ("int32", "int64"):
        return rng.randint(0, 3650)
    if dtype in ("float32", "float64"):
        return round(rng.lognormvariate(3.0, 1.2), 2)
    if dtype == "bool":
        return rng.random() < 0.5
    if name in ("country", "home_country"):
        return rng.choice(_COUNTRIES)
    return f"{name}-{rng.randint(0, 500)}"


def _tiles(
    view: ViewSpec, rng: random.Random, now_us: int, max_age_s: float | None
) -> dict[int, dict[bytes, bytes]]:
    """tile_s -> {field: encoded tile} of a few events of one entity, none older than
    the view's longest window (or max_age_s)."""
    dtypes = {f.name: f.dtype for f in view.input_fields}
    oldest_s = max(a.window_s for a in view.aggregations) if max_age_s is None else max_age_s
    events = []
    for _ in range(rng.randint(1, 2 * EVENTS_PER_ENTITY)):
        # Half the events in the last 10 minutes, so that short windows are not empty.
        age_s = rng.uniform(0, min(600, oldest_s)) if rng.random() < 0.5 else rng.uniform(0, oldest_s)
        values = {c: _value(dtypes.get(c, "float64"), rng, c) for c in dtypes}
        events.append((now_us - int(age_s * US), values))
    out: dict[int, dict[bytes, bytes]] = {}
    for tile_s in view.tile_sizes_s():
        columns = tile_parts(view, tile_s)
        states: dict[int, dict[str, AggState]] = {}
        for ts_us, values in events:
            tile = states.setdefault(tile_start_us(ts_us, tile_s) // US, {})
            for column, parts in columns.items():
                tile.setdefault(column, AggState()).add(values.get(column), parts=parts)
        out[tile_s] = {tile_field(start, 0): encode_tile(st) for start, st in states.items()}
    return out


def load_online_features(
    client: Any,
    repo: RepoSpec,
    layout: FeatureLayout,
    domain: EntityDomain,
    now_us: int,
    seed: int = 1,
    max_age_s: float | None = None,
) -> int:
    """Write every view's values for the domain's entities; returns keys written.

    max_age_s bounds how old the events behind windowed aggregations are: with events
    of the last few minutes only, no tile leaves a window for several minutes, so
    values served a minute apart are equal (what tests comparing fetches rely on)."""
    rng = random.Random(seed)
    written = 0
    for view in _views(repo, layout):
        if len(view.join_keys) != 1:
            raise ValueError(f"view {view.name!r}: synthetic data supports one join key")
        key = view.join_keys[0]
        present = [v for v in domain.values[key.name] if rng.random() >= MISSING_SHARE]
        for lo in range(0, len(present), _CHUNK):
            chunk = present[lo : lo + _CHUNK]
            if view.is_aggregating:
                written += _write_tiles(client, repo.project, view, chunk, rng, now_us, max_age_s)
            else:
                written += _write_latest(client, repo.project, view, chunk, rng, now_us)
    return written


def _write_tiles(
    client: Any,
    project: str,
    view: ViewSpec,
    entities: Sequence[Any],
    rng: random.Random,
    now_us: int,
    max_age_s: float | None,
) -> int:
    key = view.join_keys[0]
    pipe = client.pipeline(transaction=False)
    for entity in entities:
        ekey = serialize_entity_key([key.name], [key.dtype], [entity])
        for tile_s, fields in _tiles(view, rng, now_us, max_age_s).items():
            pipe.hset(tile_key(project, view.name, tile_s, ekey), mapping=fields)
    pipe.execute()
    return len(entities)


def _write_latest(
    client: Any, project: str, view: ViewSpec, entities: Sequence[Any], rng: random.Random, now_us: int
) -> int:
    key = view.join_keys[0]
    encode = single_key_encoder(project, key.name, key.dtype)
    rows = []
    for entity in entities:
        age_us = int(rng.uniform(0, min(view.ttl_s or 86_400, 86_400) / 2) * US)
        values = {f.name: _value(f.dtype, rng, f.name) for f in view.features}
        rows.append(LatestRow(encode(entity), now_us - age_us, now_us - age_us, values))
    LatestValueWriter(client, view).write(rows)
    return len(entities)


def request_rows(layout: FeatureLayout, domain: EntityDomain, n: int, seed: int = 2) -> list[tuple[Any, ...]]:
    """n requests' field values in `layout.entity_fields` order (request fields random)."""
    rng = random.Random(seed)
    keys = dict(layout.join_keys)
    rows = []
    for _ in range(n):
        rows.append(
            tuple(
                domain.sample(rng, name) if name in keys else _value(dtype, rng, name)
                for name, dtype in layout.entity_fields
            )
        )
    return rows
