"""The steps behind `featureline stats` and `featureline drift`: measure a source, pick a
reference, compare, store. The CLI modules parse and print; this module decides."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from featureline.batch.stats.sources import logged_stats, offline_views, read_parquet, view_stats
from featureline.batch.stats.store import read_stats, write_report
from featureline.errors import BadInputError
from featureline.specs import RepoSpec
from featureline.stats.drift import Thresholds
from featureline.stats.report import DriftReport, drift_report
from featureline.stats.table import FeatureStats, StatsSet, model_stats_path, training_set_stats


@dataclass(frozen=True)
class Source:
    """What to measure: the offline store over [start, end) (views: all plain ones, or
    these), a training-set file, or logged vectors."""

    start: datetime | None = None
    end: datetime | None = None
    views: tuple[str, ...] = ()
    training_set: Path | None = None
    logged: Path | None = None
    service: str | None = None
    timestamp_column: str | None = "event_timestamp"


def offline_stats(repo: RepoSpec, source: Source) -> tuple[StatsSet, list[str]]:
    """Every measured view's statistics in one set, and a note per view left out."""
    if source.start is None or source.end is None:
        raise BadInputError("the offline store needs a date range: --start and --end")
    if source.end <= source.start:
        raise BadInputError(f"--end {source.end.isoformat()} is not after --start {source.start.isoformat()}")
    views, skipped = offline_views(repo, list(source.views) or None)
    features: list[FeatureStats] = []
    for view in views:
        features += view_stats(view, source.start, source.end).features
    meta = {"kind": "offline", "views": [v.name for v in views],
            "start": source.start.isoformat(), "end": source.end.isoformat()}  # fmt: skip
    return StatsSet(meta, features), skipped


def measure(repo: RepoSpec, source: Source) -> tuple[StatsSet, list[str]]:
    if source.training_set is not None:
        table = read_parquet(source.training_set)
        ts = source.timestamp_column if source.timestamp_column in table.column_names else None
        return training_set_stats(table, repo, source.service, ts, str(source.training_set)), []
    if source.logged is not None:
        return logged_stats(read_parquet(source.logged), repo, source.service, str(source.logged)), []
    return offline_stats(repo, source)


def load_reference(path: Path) -> StatsSet:
    """A model file's training-set statistics (x.pt -> x.stats.json), or a statistics
    file written by `featureline stats`."""
    if path.suffix == ".json":
        return read_stats(path)
    sidecar = model_stats_path(path)
    if not sidecar.is_file():
        raise BadInputError(
            f"{str(path)!r} has no training-set statistics beside it ({sidecar.name}): "
            "models trained by `featureline train` from this version on have them; retrain, "
            "or pass a statistics file or --reference-start/--reference-end"
        )
    return read_stats(sidecar)


def default_name(reference: StatsSet, path: Path | None) -> str:
    if reference.source.get("service"):
        return str(reference.source["service"])
    if path is not None:
        return path.name.split(".")[0]
    return f"range-{reference.source.get('start', '')[:10]}-{reference.source.get('end', '')[:10]}"


def run_drift(
    offline_dir: Path, name: str, reference: StatsSet, current: StatsSet, thresholds: Thresholds
) -> tuple[DriftReport, Path, Path]:
    report = drift_report(name, reference, current, thresholds)
    json_path, prom_path = write_report(offline_dir, report)
    return report, json_path, prom_path


def not_compared(reference: StatsSet, current: StatsSet) -> list[str]:
    """Reference features the recent data lacks (an aggregating view offline, say)."""
    have = current.by_key()
    return [f"{f.view}:{f.feature}" for f in reference.features if f.key not in have]
