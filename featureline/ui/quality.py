"""A feature's statistics and drift on its page, and the drift metrics of the UI's
/metrics: read from what `featureline stats` and `featureline drift` wrote under the
offline store (batch.stats.store), never computed on a page."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from featureline.batch.stats.store import read_reports, read_stats, stats_root
from featureline.errors import BadInputError
from featureline.expectations import expectations_of
from featureline.specs import ViewSpec
from featureline.stats.drift import FeatureDrift
from featureline.ui import metrics as m

VIOLATIONS = "featureline_stream_expectation_violations_total"

# The newest days' files read for a feature page: a day file holds every feature of
# its view (~10-50 KB for the demo's views); 7 keeps a page well under 300 ms.
DAYS_SHOWN = 7


@dataclass
class DriftRow:
    report: str
    entry: FeatureDrift
    chart: str  # inline SVG: the reference's and the recent shares per bin


@dataclass
class FeatureQuality:
    days: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (day, summary), newest first
    drift: list[DriftRow] = field(default_factory=list)


@dataclass
class Expectations:
    rules: list[str]  # the field's rules and the view's, as people read them
    policy: str  # the stream job's: count or dead_letter
    violations: dict[str, float]  # rule -> events the stream job found (its metrics)


def feature_expectations(view: ViewSpec | None, feature: str, window: m.Window) -> Expectations:
    """The data-quality expectations that apply to a feature (featureline.expectations)
    and what the stream job counted of them in its last scrape."""
    if view is None:
        return Expectations([], "", {})
    exp = expectations_of(view)
    rules = [r for r in exp.rules if r.field in (feature, "")]
    found = m.total(window.now, VIOLATIONS, "rule", view=view.name, field=feature)
    return Expectations([r.describe() for r in rules], exp.policy, found)


def _view_days(offline_dir: Path, view: str) -> list[Path]:
    folder = stats_root(offline_dir) / "views" / view
    return sorted(folder.glob("*.json"), reverse=True)[:DAYS_SHOWN] if folder.is_dir() else []


def feature_quality(offline_dir: Path, view: str, feature: str) -> FeatureQuality:
    """The feature's newest daily statistics and every drift report's entry for it."""
    out = FeatureQuality()
    for path in _view_days(offline_dir, view):
        try:
            stats = read_stats(path).by_key().get((view, feature))
        except BadInputError:
            continue  # a torn or foreign file: the page shows the others
        if stats is not None:
            out.days += [(day, s.summary()) for day, s in sorted(stats.days.items(), reverse=True)]
    for report in read_reports(offline_dir):
        for entry in report.features:
            if entry.view == view and entry.feature == feature:
                out.drift.append(DriftRow(report.name, entry, drift_svg(entry)))
    return out


def drift_svg(entry: FeatureDrift, width: int = 560, height: int = 160) -> str:
    """Paired bars per bin: the reference (grey) and the recent data (blue or red)."""
    bins = entry.bins
    if not bins:
        return ""
    top = max([*entry.reference_shares, *entry.current_shares, 1e-9])
    slot = (width - 40) / len(bins)
    bar = max(slot / 2 - 2, 1.0)
    recent = "#c0392b" if entry.drifted else "#2a6fdb"
    parts = []
    for i, label in enumerate(bins):
        x = 30 + i * slot
        for j, (share, colour) in enumerate(
            ((entry.reference_shares[i], "#9a9a9a"), (entry.current_shares[i], recent))
        ):
            h = (height - 40) * share / top
            parts.append(
                f'<rect x="{x + j * (bar + 1):.1f}" y="{height - 24 - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(label)}: {share:.1%}</title></rect>'
            )
        parts.append(
            f'<text x="{x + bar:.1f}" y="{height - 8}" font-size="9" text-anchor="middle">'
            f"{escape(label[:10])}</text>"
        )
    legend = (
        f'<text x="30" y="12" font-size="11" fill="#666">reference</text>'
        f'<text x="100" y="12" font-size="11" fill="{recent}">recent</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart drift" width="{width}" '
        f'height="{height}" role="img" aria-label="drift of {escape(entry.feature)}">'
        f"{legend}{''.join(parts)}</svg>"
    )
