"""`get_historical_features`: point-in-time-correct training sets (semantics.md 1 and 2).

    from batch.historical import get_historical_features
    table = get_historical_features("entities.parquet", ["user_profile:credit_limit"])
    df = table.to_pandas()

One output row per entity row, in input order, every input column kept, then one column
per feature (Feast's names; `view__feature` with full_feature_names).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from batch.historical.entity_df import load_entity_df
from batch.historical.finish import finish
from batch.historical.local_engine import LocalOptions, run_local
from batch.historical.plan import build_plan
from featureline.errors import BadInputError
from featureline.settings import Settings
from featureline.specs import RepoSpec, resolve_features

Engine = Literal["local", "spark"]
ENGINES: tuple[Engine, ...] = ("local", "spark")


def get_historical_features(
    entity_df: pa.Table | Any | str | Path,
    features: Sequence[str] | None = None,
    *,
    feature_service: str | None = None,
    repo: RepoSpec | None = None,
    settings: Settings | None = None,
    full_feature_names: bool = False,
    engine: Engine = "local",
    timestamp_column: str | None = None,
    local_options: LocalOptions | None = None,
    spark_master: str | None = None,
) -> pa.Table:
    """Features as of each entity row's timestamp, as a pyarrow Table.

    entity_df: a pyarrow Table, a pandas DataFrame, or a .parquet/.csv path; it needs
    the views' join keys and a timestamp column (`event_timestamp`, or the one
    timestamp column, or `timestamp_column`). features: "view:feature" refs, or
    feature_service: a feature service name. repo: the specs (default: loaded from
    `settings`, default Settings.from_env()). Bad input raises BadInputError naming
    the column or feature.
    """
    if engine not in ENGINES:
        raise BadInputError(f"unknown engine {engine!r}; use one of: {', '.join(ENGINES)}")
    if features is not None and not features:
        raise BadInputError("no features requested")
    if repo is None:
        from featureline.repo import load_repo

        repo = load_repo(settings or Settings.from_env())
    refs = list(features) if features is not None else None
    resolved = resolve_features(repo, refs, feature_service, full_feature_names=full_feature_names)
    key_types = {k.name: k.dtype for f in resolved if not f.on_demand for k in repo.view(f.view).join_keys}
    entities = load_entity_df(entity_df, timestamp_column, key_types)
    plan = build_plan(repo, resolved, entities, full_feature_names)
    if engine == "spark":
        from batch.historical.spark_engine import run_spark

        raw = run_spark(plan, spark_master)
    else:
        raw = run_local(plan, local_options)
    return finish(plan, raw)
