"""Which features to compare, grouped by entity, and which entities to sample.

Features: every feature of every online view (or the given refs / feature service);
on-demand features are left out (they need request data, which a sample of entities
does not have) and reported as such. Entities: a seeded random sample of the distinct
keys found in the views' offline sources, so a key that streaming or materialize
missed online shows up as "missing" instead of silently not being asked for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from featureline.object_store import Location
from featureline.specs import FieldSpec, RepoSpec, ViewSpec, resolve_features


@dataclass(frozen=True)
class EntityGroup:
    """Features of views sharing one set of join keys."""

    join_keys: tuple[FieldSpec, ...]
    refs: tuple[str, ...]  # "view:feature"
    views: tuple[ViewSpec, ...]

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.join_keys)


def feature_groups(
    repo: RepoSpec, refs: list[str] | None = None, service: str | None = None
) -> tuple[list[EntityGroup], list[str]]:
    """(groups of comparable features, on-demand refs left out)."""
    if refs is None and service is None:
        refs = [f"{v.name}:{f}" for _, v in sorted(repo.views.items()) if v.online for f in v.feature_names]
    resolved = resolve_features(repo, refs, service, full_feature_names=True)
    skipped = [f"{r.view}:{r.feature}" for r in resolved if r.on_demand]
    by_keys: dict[tuple[FieldSpec, ...], tuple[list[str], list[ViewSpec]]] = {}
    for r in resolved:
        if r.on_demand:
            continue
        view = repo.view(r.view)
        refs_of, views_of = by_keys.setdefault(view.join_keys, ([], []))
        refs_of.append(f"{r.view}:{r.feature}")
        if view not in views_of:
            views_of.append(view)
    groups = [EntityGroup(k, tuple(r), tuple(v)) for k, (r, v) in by_keys.items()]
    return groups, skipped


def source_keys(view: ViewSpec, names: tuple[str, ...]) -> pa.Table:
    """Distinct non-null key tuples in the view's offline source (empty if none)."""
    if view.batch_source is None or not Location.of(view.batch_source).exists():
        return pa.table({n: pa.array([], pa.null()) for n in names})
    table = Location.of(view.batch_source).dataset().to_table(columns=list(names))
    for n in names:
        table = table.filter(pc.is_valid(table[n]))
    return table.group_by(list(names)).aggregate([])


def sample_keys(group: EntityGroup, size: int, seed: int) -> list[tuple[Any, ...]]:
    """Up to `size` distinct key tuples, sampled with `seed` from every view's source."""
    names = group.key_names
    seen: set[tuple[Any, ...]] = set()
    for view in group.views:
        table = source_keys(view, names)
        columns = [table[n].to_pylist() for n in names]
        seen.update(zip(*columns, strict=True))
    population = sorted(seen, key=repr)
    if len(population) <= size:
        return population
    return random.Random(seed).sample(population, size)
