"""Where statistics and drift reports live, under the offline store (known paths, for
the UI and for Prometheus):

    <offline>/_stats/views/<view>/<YYYY-MM-DD>.json   a view's statistics of one day
    <offline>/_stats/training/<name>.json             a training set's (`stats --training-set`)
    <offline>/_stats/logged/<name>.json               logged vectors' (`stats --logged`)
    <offline>/_stats/drift/<name>.json                the latest drift report named <name>
    <offline>/_stats/drift/<name>.prom                its metrics, Prometheus text format
    <model>.stats.json                                beside a model: its training set's
                                                      (featureline.stats.table.model_stats_path)

The .prom files are for node_exporter's textfile collector
(`--collector.textfile.directory=<offline>/_stats/drift`); `drift_exposition(offline)`
returns the same text for a /metrics endpoint to append (the UI's). Every file is
written to a temporary name and renamed: a reader never sees half a report.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from featureline.errors import BadInputError
from featureline.stats.report import DriftReport, exposition
from featureline.stats.table import FeatureStats, StatsSet

STATS_DIR = "_stats"
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(name: str) -> str:
    """A file name of `name`: letters, digits, _ . - (others become _)."""
    cleaned = _NAME.sub("_", name).strip("._")
    if not cleaned:
        raise BadInputError(f"{name!r} cannot name a file")
    return cleaned


def stats_root(offline_dir: Path) -> Path:
    return offline_dir / STATS_DIR


def view_day_path(offline_dir: Path, view: str, day: str) -> Path:
    return stats_root(offline_dir) / "views" / safe_name(view) / f"{day}.json"


def named_stats_path(offline_dir: Path, kind: str, name: str) -> Path:
    return stats_root(offline_dir) / kind / f"{safe_name(name)}.json"


def drift_dir(offline_dir: Path) -> Path:
    return stats_root(offline_dir) / "drift"


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_stats(path: Path) -> StatsSet:
    try:
        text = path.read_text()
    except OSError as exc:
        raise BadInputError(f"cannot read statistics {str(path)!r}: {exc.strerror}") from None
    return StatsSet.from_json(text, repr(str(path)))


def write_view_days(offline_dir: Path, stats: StatsSet) -> list[Path]:
    """One file per day of a view's statistics (the day's file replaced)."""
    written = []
    view = str(stats.source["view"])
    days = sorted({d for f in stats.features for d in f.days})
    for day in days:
        features = [
            FeatureStats(f.view, f.feature, f.column, {day: f.days[day]})
            for f in stats.features
            if day in f.days
        ]
        one = StatsSet({**stats.source, "day": day}, features, stats.created_at)
        path = view_day_path(offline_dir, view, day)
        write_text(path, one.to_json())
        written.append(path)
    return written


def write_report(offline_dir: Path, report: DriftReport) -> tuple[Path, Path]:
    """The report's JSON and its .prom textfile, under <offline>/_stats/drift."""
    base = drift_dir(offline_dir) / safe_name(report.name)
    json_path, prom_path = base.with_suffix(".json"), base.with_suffix(".prom")
    write_text(json_path, report.to_json())
    write_text(prom_path, exposition([report]))
    return json_path, prom_path


def read_reports(offline_dir: Path) -> list[DriftReport]:
    """Every drift report under the offline store, by name (an unreadable one skipped:
    a /metrics scrape must not fail on one bad file)."""
    out = []
    for path in sorted(drift_dir(offline_dir).glob("*.json")):
        try:
            out.append(DriftReport.from_json(path.read_text(), str(path)))
        except (OSError, BadInputError):
            continue
    return out


def drift_exposition(offline_dir: Path) -> str:
    """Prometheus text of every drift report: for a /metrics endpoint to append."""
    return exposition(read_reports(offline_dir))
