"""`get_historical_features`: point-in-time-correct training sets (semantics.md 1 and 2).

    from featureline.batch.historical import get_historical_features
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

from featureline.batch.historical.entity_df import load_entity_df
from featureline.batch.historical.finish import finish
from featureline.batch.historical.local_engine import LocalOptions, run_local
from featureline.batch.historical.plan import build_plan
from featureline.errors import BadInputError
from featureline.offline import ARROW_TYPES
from featureline.settings import Settings
from featureline.specs import OnDemandViewSpec, RepoSpec, ResolvedFeature, resolve_features

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
    _check_label_policies(repo, resolved)
    run = _Retrieval(repo, entity_df, timestamp_column, engine, local_options, spark_master)
    if not any(f.on_demand for f in resolved):
        return run(resolved, full_feature_names)
    return _with_on_demand(run, repo, resolved, full_feature_names)


def _check_label_policies(repo: RepoSpec, resolved: list[ResolvedFeature]) -> None:
    """A label view's rows are joined point in time, last write wins (semantics.md 1);
    its other ConflictPolicies resolve across labelers, which is not implemented."""
    for feature in resolved:
        view = None if feature.on_demand else repo.view(feature.view)
        if view is not None and view.is_label_view and view.label_policy != "last_write_wins":
            raise BadInputError(
                f"label view {view.name!r} has conflict policy {view.label_policy}; historical "
                "retrieval supports label views with last_write_wins only"
            )


class _Retrieval:
    """One retrieval of resolved (not on-demand) features for the caller's entity rows."""

    def __init__(self, repo: RepoSpec, entity_df: Any, timestamp_column: str | None, engine: Engine,
                 local_options: LocalOptions | None, spark_master: str | None) -> None:  # fmt: skip
        self.repo, self.entity_df, self.timestamp_column = repo, entity_df, timestamp_column
        self.engine, self.local_options, self.spark_master = engine, local_options, spark_master

    def __call__(self, resolved: list[ResolvedFeature], full_feature_names: bool) -> pa.Table:
        key_types = {k.name: k.dtype for f in resolved for k in self.repo.view(f.view).join_keys}
        entities = load_entity_df(self.entity_df, self.timestamp_column, key_types)
        plan = build_plan(self.repo, resolved, entities, full_feature_names)
        if self.engine == "spark":
            from featureline.batch.historical.spark_engine import run_spark

            raw = run_spark(plan, self.spark_master)
        else:
            raw = run_local(plan, self.local_options)
        return finish(plan, raw)


def _with_on_demand(
    run: _Retrieval, repo: RepoSpec, resolved: list[ResolvedFeature], full_feature_names: bool
) -> pa.Table:
    """On-demand features: retrieve their source features point-in-time (full names, so
    they cannot collide with the caller's), run each udf over the rows with the entity
    frame's request columns (featureline.odfv, the same runner serving uses), and lay
    the columns out in the requested order after the entity columns."""
    from featureline.odfv import OnDemandRunner

    odfvs = {f.view: repo.on_demand_views[f.view] for f in resolved if f.on_demand}
    sources = [(v, feat) for spec in odfvs.values() for v, feats in spec.sources for feat in feats]
    inputs = run(resolve_features(repo, sorted({f"{v}:{x}" for v, x in sources}),
                                  full_feature_names=True), True)  # fmt: skip
    n = inputs.num_rows
    computed: dict[str, pa.ChunkedArray | pa.Array] = {}
    for name, spec in odfvs.items():
        missing = [f.name for f in spec.request_fields if f.name not in inputs.column_names]
        if missing:
            raise BadInputError(
                f"on-demand view {name!r} needs request column(s) {', '.join(missing)} in the entity frame"
            )
        columns = {x: inputs[f"{v}__{x}"].to_pylist() for v, x in sources if (v, x) in _pairs(spec)}
        columns |= {f.name: inputs[f.name].to_pylist() for f in spec.request_fields}
        out = OnDemandRunner.build(spec).run(columns, n)
        for feat in spec.features:
            computed[f"{name}:{feat.name}"] = pa.array(out[feat.name], type=ARROW_TYPES.get(feat.dtype))
    plain = [f for f in resolved if not f.on_demand]
    base = run(plain, full_feature_names) if plain else inputs
    source_names = {f"{v}__{x}" for v, x in sources}
    entity_columns = (
        [c for c in base.column_names if c not in source_names]
        if not plain
        else [c for c in base.column_names if c not in {f.output_name(full_feature_names) for f in plain}]
    )
    arrays = [base[c] for c in entity_columns]
    names = list(entity_columns)
    extras = _source_extras(sources, resolved, inputs, full_feature_names)
    for f in resolved:
        if f.on_demand and extras:
            names += list(extras)
            arrays += list(extras.values())
            extras = {}
        arrays.append(
            computed[f"{f.view}:{f.feature}"] if f.on_demand else base[f.output_name(full_feature_names)]
        )
        names.append(f.output_name(full_feature_names))
    return pa.table(arrays, names=names)


def _source_extras(
    sources: list[tuple[str, str]], resolved: list[ResolvedFeature], inputs: pa.Table, full_names: bool
) -> dict[str, pa.ChunkedArray]:
    """The on-demand views' source features the caller did not ask for: Feast's
    get_historical_features returns them too (it retrieves them for the udfs and keeps
    them in the frame), so the output has the same columns as Feast's. Ahead of the
    first on-demand column, as Feast puts feature-view columns before on-demand ones."""
    taken = {f.output_name(full_names) for f in resolved}
    extras: dict[str, pa.ChunkedArray] = {}
    for view, feature in sources:
        name = f"{view}__{feature}" if full_names else feature
        if name not in taken and name not in extras:
            extras[name] = inputs[f"{view}__{feature}"]
    return extras


def _pairs(spec: OnDemandViewSpec) -> set[tuple[str, str]]:
    return {(v, x) for v, feats in spec.sources for x in feats}
