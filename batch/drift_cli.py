"""`featureline drift`: compare recent feature values with a reference, per feature;
write the report and its metrics under <offline>/_stats/drift.

argparse only at import time (`--help` stays fast); the work loads inside `run`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from featureline.settings import Settings

EPILOG = """\
Reference (one):
  --reference MODEL.pt     the model's training-set statistics, saved beside it by
                           `featureline train` (MODEL.stats.json)
  --reference FILE.json    statistics written by `featureline stats`
  --reference-start T --reference-end T
                           a pinned date range of the offline store
Recent data (one; default: the offline store from yesterday 00:00 UTC to now):
  --start T --end T        the offline store (plain views: their rows)
  --logged PATH            served vectors logged in Feast's layout
  --training-set FILE      another training set

Per feature: the population stability index on the reference's bins (deciles; top 20
values + other for strings and bools; nulls one more bin) and a two-sample test
(Kolmogorov-Smirnov for numbers, chi-square for categories). A feature has drifted
when PSI > --psi-threshold (default 0.2: the usual "significant shift") AND the
p-value < --p-threshold (default 0.01: one false alarm per 100 unchanged features):
with millions of rows any shift is significant, with dozens PSI is noisy.

Written: <offline>/_stats/drift/<name>.json (one entry per feature: score, p-value,
thresholds, drifted) and <name>.prom (featureline_feature_drift_psi and
featureline_feature_drift{reference,view,feature}: scrape it with node_exporter's
textfile collector, or from the UI's /metrics). --fail-on-drift exits 1 if any drifted."""


def configure(parser: argparse.ArgumentParser) -> None:
    from featureline.batch.backfill_cli import parse_instant

    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--reference", type=Path, metavar="MODEL.pt|FILE.json", help="the reference")
    parser.add_argument(
        "--reference-start", type=parse_instant, metavar="T", help="pinned reference range: first day"
    )
    parser.add_argument(
        "--reference-end", type=parse_instant, metavar="T", help="pinned reference range: end, exclusive"
    )
    recent = parser.add_mutually_exclusive_group()
    recent.add_argument("--logged", type=Path, metavar="PATH", help="recent data: logged vectors")
    recent.add_argument("--training-set", type=Path, metavar="FILE", help="recent data: a training set")
    parser.add_argument(
        "--start", type=parse_instant, metavar="T", help="recent data: first day (default yesterday)"
    )
    parser.add_argument(
        "--end", type=parse_instant, metavar="T", help="recent data: end, exclusive (default now)"
    )
    parser.add_argument("--views", nargs="+", metavar="VIEW", help="offline store: only these views")
    parser.add_argument("--feature-service", default=None, metavar="NAME", help="map full-name columns")
    parser.add_argument(
        "--psi-threshold", type=float, default=None, help="drift when PSI is over (default 0.2)"
    )
    parser.add_argument("--p-threshold", type=float, default=None, help="... and p under (default 0.01)")
    parser.add_argument(
        "--name", default=None, help="report name (default: the model's service, or the range)"
    )
    parser.add_argument("--fail-on-drift", action="store_true", help="exit 1 when a feature drifted")


def run(args: Any, settings: Settings) -> int:
    from featureline.batch.stats.run import (
        Source,
        default_name,
        load_reference,
        measure,
        not_compared,
        run_drift,
    )
    from featureline.errors import BadInputError
    from featureline.repo import load_repo
    from featureline.stats.drift import DEFAULT_P_THRESHOLD, DEFAULT_PSI_THRESHOLD, Thresholds

    thresholds = Thresholds(
        DEFAULT_PSI_THRESHOLD if args.psi_threshold is None else args.psi_threshold,
        DEFAULT_P_THRESHOLD if args.p_threshold is None else args.p_threshold,
    )
    if thresholds.psi <= 0 or not 0 < thresholds.p_value <= 1:
        raise BadInputError("--psi-threshold must be > 0 and --p-threshold in (0, 1]")
    pinned = args.reference_start is not None or args.reference_end is not None
    if (args.reference is not None) == pinned:
        raise BadInputError("give one reference: --reference FILE, or --reference-start and --reference-end")
    repo = load_repo(settings)
    views = tuple(args.views or ())
    if pinned:
        reference, _ = measure(repo, Source(args.reference_start, args.reference_end, views))
    else:
        reference = load_reference(args.reference)
    service = args.feature_service or reference.source.get("service") or None
    start, end = _recent_range(args.start, args.end)
    if not views and args.logged is None and args.training_set is None:
        views = _offline_views_of(repo, reference)
    current, _ = measure(repo, Source(start, end, views, args.training_set, args.logged, service))
    name = args.name or default_name(reference, args.reference)
    report, json_path, prom_path = run_drift(
        settings.resolved_offline_dir, name, reference, current, thresholds
    )
    _print(report)
    for ref in not_compared(reference, current):
        print(f"not compared: {ref} (no recent values: an aggregating view offline, or not logged)")
    print(f"{len(report.drifted)} of {len(report.features)} features drifted")
    print(f"report {json_path}\nmetrics {prom_path}")
    return 1 if report.drifted and args.fail_on_drift else 0


def _recent_range(start: Any, end: Any) -> tuple[Any, Any]:
    from datetime import UTC, datetime, timedelta

    end = end or datetime.now(UTC)
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start or midnight - timedelta(days=1), end


def _offline_views_of(repo: Any, reference: Any) -> tuple[str, ...]:
    """The reference's views that have rows offline (plain, with a file source)."""
    names = {f.view for f in reference.features}
    plain = {n for n, v in repo.views.items() if not v.is_aggregating and v.batch_source is not None}
    return tuple(sorted(names & plain))


def _print(report: Any) -> None:
    print(f"{'feature':<44} {'test':<5} {'psi':>8} {'statistic':>10} {'p-value':>9} drifted")
    for f in report.features:
        psi = "" if f.psi is None else f"{f.psi:.4f}"
        stat = "" if f.statistic is None else f"{f.statistic:.4g}"
        p = "" if f.p_value is None else f"{f.p_value:.3g}"
        mark = "YES" if f.drifted else "no"
        note = f"  ({f.note})" if f.note else ""
        print(f"{f.view + ':' + f.feature:<44} {f.test:<5} {psi:>8} {stat:>10} {p:>9} {mark}{note}")
