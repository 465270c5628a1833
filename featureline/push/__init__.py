"""Push and write-to-online-store, as Feast's FeatureStore.push / write_to_online_store.

    push(repo, store, "driver_stats_push_source", df, to="online_and_offline")
    write_to_online_store(repo, store, "driver_hourly_stats", df)

`store` is the online store (featureline.online_store.open_store), or a redis-py client.

`df` is Feast's request frame (column -> list of values). Every view the write
touches is checked and converted first (featureline.push.frame): a frame with a
missing join key or timestamp column, or a value that does not match its type, is
refused whole with BadInputError naming the column, and nothing is written. Then
offline (one atomic append per batch source, featureline.push.offline), then online
(event-time last-write-wins, featureline.push.online): a failure online after the
offline append leaves rows that a later `materialize` loads, never a half row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from featureline.errors import BadInputError, ServiceUnavailableError
from featureline.push.frame import ViewRows, check_frame, view_rows
from featureline.specs import RepoSpec, ViewSpec

PUSH_TO = ("online", "offline", "online_and_offline")


@dataclass
class WriteResult:
    views: list[str]
    rows: int = 0
    online_written: int = 0  # entities that took the new row (the others held a newer one)
    offline_files: list[str] = field(default_factory=list)


def _writable(view: ViewSpec) -> ViewSpec:
    if view.is_aggregating:
        raise BadInputError(
            f"view {view.name!r} computes windowed aggregations: its values cannot be written directly"
        )
    return view


def prepare(views: list[ViewSpec], df: Any) -> tuple[list[ViewRows], dict[str, list[Any]]]:
    """Check and convert the frame for every view, before anything is written."""
    frame = check_frame(df)
    return [view_rows(_writable(v), frame) for v in views], frame


def write_rows(
    repo: RepoSpec,
    client: Any,
    prepared: list[ViewRows],
    frame: Mapping[str, list[Any]],
    *,
    online: bool,
    offline: bool,
    key_ttl_s: int = 0,
) -> WriteResult:
    from featureline.online_store import StoreUnavailableError

    result = WriteResult([r.view.name for r in prepared], rows=len(prepared[0]) if prepared else 0)
    try:
        _write(repo, client, prepared, frame, result, online, offline, key_ttl_s)
    except StoreUnavailableError as exc:
        raise ServiceUnavailableError(f"the online store (Redis) failed: {exc}") from None
    except OSError as exc:
        raise ServiceUnavailableError(f"the offline store cannot be written: {exc}") from None
    return result


def _write(
    repo: RepoSpec,
    client: Any,
    prepared: list[ViewRows],
    frame: Mapping[str, list[Any]],
    result: WriteResult,
    online: bool,
    offline: bool,
    key_ttl_s: int,
) -> None:
    from featureline.push.offline import source_path, write_offline
    from featureline.push.online import write_online

    if offline:
        seen: set[str] = set()
        for rows in prepared:  # views fed by one source share its files: append once
            path = str(source_path(rows.view))
            if path not in seen:
                seen.add(path)
                result.offline_files += [str(p) for p in write_offline(rows, frame)]
    if online:
        for rows in prepared:
            result.online_written += write_online(client, repo.project, rows, key_ttl_s=key_ttl_s)


def push(
    repo: RepoSpec, client: Any, push_source: str, df: Any, to: str = "online", *, key_ttl_s: int = 0
) -> WriteResult:
    """Feast's push: every view the PushSource feeds, online and/or offline."""
    if to not in PUSH_TO:
        raise BadInputError(f"field 'to' must be one of {', '.join(PUSH_TO)}, not {to!r}")
    views = repo.views_of_push_source(push_source)
    prepared, frame = prepare(views, df)
    return write_rows(
        repo, client, prepared, frame, online=to != "offline", offline=to != "online", key_ttl_s=key_ttl_s
    )


def write_to_online_store(
    repo: RepoSpec, client: Any, view_name: str, df: Any, *, key_ttl_s: int = 0
) -> WriteResult:
    """Feast's write_to_online_store: one view, online only."""
    if view_name in repo.on_demand_views:
        raise BadInputError(f"on-demand view {view_name!r}: writing its values is not supported")
    prepared, frame = prepare([repo.view(view_name)], df)
    return write_rows(repo, client, prepared, frame, online=True, offline=False, key_ttl_s=key_ttl_s)
