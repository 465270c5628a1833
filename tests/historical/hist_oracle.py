"""A deliberately naive oracle: for every request row, loop over every source row and
apply featureline.semantics' rules one at a time. No joins, no sorting, no vectors."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from featureline.semantics import aggregate, in_window, latest_order_key, within_ttl
from featureline.specs import RepoSpec

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(value: datetime) -> int:
    """An instant in UTC microseconds; a naive datetime is UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows as dicts, each with its timestamps also as microseconds (`<name>__us`)."""
    rows = table.to_pylist()
    for row in rows:
        for name, value in list(row.items()):
            if isinstance(value, datetime):
                row[f"{name}__us"] = micros(value)
    return rows


def latest(
    repo: RepoSpec, view_name: str, source: list[dict[str, Any]], request: dict[str, Any], t_us: int
) -> dict[str, Any]:
    view = repo.view(view_name)
    src = view.batch_source
    assert src is not None
    rename = {theirs: ours for theirs, ours in src.field_mapping.items()}
    best: dict[str, Any] | None = None
    best_key: tuple[int, int] | None = None
    for row in source:
        row = {rename.get(k, k): v for k, v in row.items()}
        if any(row[k.name] is None or row[k.name] != request[k.name] for k in view.join_keys):
            continue
        if row[src.timestamp_field] is None:
            continue
        event = row[src.timestamp_field + "__us"]
        if not within_ttl(event, t_us, view.ttl_s):
            continue
        created = row.get(src.created_timestamp_column + "__us")
        key = latest_order_key(event, created)
        if best_key is None or key > best_key:
            best, best_key = row, key
    return {f.name: (None if best is None else best[f.name]) for f in view.features}


def windowed(
    repo: RepoSpec, view_name: str, events: list[dict[str, Any]], request: dict[str, Any], t_us: int
) -> dict[str, Any]:
    view = repo.view(view_name)
    src = view.batch_source
    assert src is not None
    mine = [
        row
        for row in events
        if all(row[k.name] is not None and row[k.name] == request[k.name] for k in view.join_keys)
    ]
    out = {}
    for agg in view.aggregations:
        values = []
        for row in mine:
            event = row[src.timestamp_field + "__us"]
            if event is not None and in_window(event, t_us, agg.window_s, agg.tile_s):
                values.append(row[agg.column])
        out[agg.name] = aggregate(values, agg.function)
    return out


def expected(repo: RepoSpec, sources: dict[str, pa.Table], entity: pa.Table) -> list[dict[str, Any]]:
    """One dict per request row: the entity row's columns, then every view's features."""
    result = []
    source_rows = {name: _rows(table) for name, table in sources.items()}
    for request in _rows(entity):
        t_us = request.pop("event_timestamp__us")
        row = dict(request)
        for name in sources:
            if repo.view(name).is_aggregating:
                row.update(windowed(repo, name, source_rows[name], request, t_us))
            else:
                row.update(latest(repo, name, source_rows[name], request, t_us))
        result.append(row)
    return result


def same(a: Any, b: Any) -> bool:
    """Equal, and for floats equal to the last bit (NaN equals NaN)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a.hex() == b.hex()
    return type(a) is type(b) and a == b


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
