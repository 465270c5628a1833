"""The historical retrieval's expected values: the naive oracle (tests/oracle/naive.py)
applied to the source rows as written. This module only translates a RepoSpec and Arrow
tables into the oracle's plain events; every rule is the oracle's."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from oracle import naive
from oracle.naive import Agg, AggView, Event, PlainView

from featureline.specs import RepoSpec, ViewSpec

same = naive.same


def _events(view: ViewSpec, table: pa.Table) -> list[Event]:
    src = view.batch_source
    assert src is not None
    rename = dict(src.field_mapping)
    out = []
    for raw in table.to_pylist():
        row = {rename.get(k, k): v for k, v in raw.items()}
        ts = row[src.timestamp_field]
        if ts is None:
            continue  # a row without an event time is at no instant: never valid
        created = row.get(src.created_timestamp_column) if src.created_timestamp_column else None
        out.append(
            Event(
                tuple(row[k.name] for k in view.join_keys),
                naive.to_us(ts),
                None if created is None else naive.to_us(created),
                row,
            )
        )
    return out


def oracle_view(view: ViewSpec, table: pa.Table) -> PlainView | AggView:
    keys = tuple(k.name for k in view.join_keys)
    if view.is_aggregating:
        # slide_s, not the production tile_s: the oracle resolves the tile size itself.
        aggs = tuple(Agg(a.name, a.column, a.function, a.window_s, a.slide_s) for a in view.aggregations)
        return AggView(keys, aggs, _events(view, table))
    return PlainView(keys, tuple(f.name for f in view.features), view.ttl_s, _events(view, table))


def expected(repo: RepoSpec, sources: dict[str, pa.Table], entity: pa.Table) -> list[dict[str, Any]]:
    """One dict per request row: the entity row's columns, then every view's features."""
    views = [oracle_view(repo.view(name), table) for name, table in sources.items()]
    requests = entity.to_pylist()
    return naive.point_in_time_join(requests, "event_timestamp", views)


def mismatches(got: pa.Table, want: list[dict[str, Any]]) -> list[str]:
    rows = got.to_pylist()
    problems = []
    if len(rows) != len(want):
        return [f"{len(rows)} rows, expected {len(want)}"]
    for i, (g, w) in enumerate(zip(rows, want, strict=True)):
        if list(g) != list(w):
            return [f"columns {list(g)} != {list(w)}"]
        for name in w:
            if not same(g[name], w[name]):
                problems.append(f"row {i} {name}: got {g[name]!r}, expected {w[name]!r}")
    return problems
