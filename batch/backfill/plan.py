"""What a backfill computes for each view, decided from the specs alone (pure).

- a view fed by a stream (its Kafka source's batch source holds the raw events):
  recomputed from those events; an aggregating one also gets its tiles;
- a batch view with a registered Spark computation (`BATCH_JOBS`, e.g. merchant_risk):
  computed from raw events (and labels);
- any other batch view reads source data someone else writes (user_profile: the
  generator): there is nothing to recompute, so it is skipped, or refused when named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from featureline.errors import BadInputError
from featureline.offline_layout import TILES_DIR
from featureline.specs import RepoSpec, ViewSpec

# Batch views computed by a Spark job of ours, by view name -> the name of the Feast
# FileSource of the raw events they read (their module lives in batch/backfill/).
BATCH_JOBS: dict[str, str] = {"merchant_risk": "transactions_raw"}

PlanKind = Literal["aggregating", "plain", "batch_job"]


@dataclass(frozen=True)
class ViewPlan:
    view: ViewSpec
    kind: PlanKind
    source: Path  # where the raw events are
    output: Path  # <offline>/<view>
    tiles: Path | None  # <offline>/_tiles/<view> for aggregating views
    lookback_s: int  # how far before the range the inputs must reach

    @property
    def name(self) -> str:
        return self.view.name


def plan_views(repo: RepoSpec, offline_dir: Path, names: list[str] | None) -> list[ViewPlan]:
    """The plans of the named views (all computable views when `names` is None)."""
    if names:
        for name in names:
            repo.view(name)  # NotFoundError naming the known views
    chosen = names or sorted(repo.views)
    plans = []
    for name in chosen:
        plan = _plan(repo, repo.view(name), offline_dir)
        if plan is not None:
            plans.append(plan)
        elif names:
            raise BadInputError(
                f"view {name!r} reads source data ({_source_path(repo.view(name))}) that "
                "backfill does not compute; computable views: "
                + ", ".join(p.name for p in plan_views(repo, offline_dir, None))
            )
    return plans


def _source_path(view: ViewSpec) -> str:
    return view.batch_source.path if view.batch_source else "no file source"


def _plan(repo: RepoSpec, view: ViewSpec, offline_dir: Path) -> ViewPlan | None:
    output = offline_dir / view.name
    if view.stream_source is not None and view.batch_source is not None:
        if view.is_aggregating:
            lookback = max(a.window_s + a.tile_s for a in view.aggregations)
            return ViewPlan(
                view, "aggregating", Path(view.batch_source.path), output,
                offline_dir / TILES_DIR / view.name, lookback,
            )  # fmt: skip
        return ViewPlan(view, "plain", Path(view.batch_source.path), output, None, 0)
    if view.name in BATCH_JOBS:
        raw = _named_source(repo, BATCH_JOBS[view.name])
        if raw is None:
            raise BadInputError(
                f"view {view.name!r} is computed from the file source {BATCH_JOBS[view.name]!r}, "
                "which no view of this repo uses"
            )
        from featureline.batch.backfill.merchant_risk import WINDOW_S

        return ViewPlan(view, "batch_job", raw, output, None, WINDOW_S)
    return None


def _named_source(repo: RepoSpec, name: str) -> Path | None:
    for view in repo.views.values():
        if view.batch_source is not None and view.batch_source.name == name:
            return Path(view.batch_source.path)
    return None
