"""Consistency reports (`featureline consistency` writes consistency-<time>.json and .html
under <home>/reports by default): listed, and drawn as inline SVG charts.

Only files named by the listing are ever opened (a name from a URL is looked up in it,
never joined to a path), and each JSON is parsed once per (mtime, size).
"""

from __future__ import annotations

import html
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^consistency-\d{8}T\d{6}Z$")
# The newest 50 reports are listed: a daily job fills that in seven weeks, and the
# trend chart stays readable (one bar each, 8 px wide).
MAX_LISTED = 50
_BAR_W = 360
_ROW_H = 20
_LABEL_W = 300
COLOURS = {"mismatch": "#d62728", "missing": "#ff7f0e", "extra": "#1f77b4"}


@dataclass(frozen=True)
class FeatureRate:
    feature: str
    compared: int
    mismatch: float
    missing: float
    extra: float

    @property
    def disagree(self) -> float:
        return self.mismatch + self.missing + self.extra


@dataclass(frozen=True)
class Report:
    name: str  # consistency-YYYYmmddTHHMMSSZ
    at: str
    ok: bool
    features: tuple[FeatureRate, ...]
    has_html: bool
    entities: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    error: str = ""

    @property
    def worst(self) -> float:
        return max((f.disagree for f in self.features), default=0.0)


_cache: dict[Path, tuple[tuple[int, int], Report]] = {}
_lock = threading.Lock()


def _parse(name: str, data: dict[str, Any], has_html: bool) -> Report:
    features = tuple(
        FeatureRate(
            str(f["feature"]),
            int(f["compared"]),
            float(f["mismatch_rate"]),
            float(f["missing_rate"]),
            float(f["extra_rate"]),
        )
        for f in data.get("features", [])
    )
    return Report(
        name,
        str(data.get("at", "")),
        bool(data.get("ok")),
        features,
        has_html,
        dict(data.get("entities") or {}),
        tuple(str(n) for n in data.get("notes") or ()),
    )


def read_report(path: Path) -> Report:
    st = path.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    with _lock:
        cached = _cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    name = path.stem
    has_html = path.with_suffix(".html").is_file()
    try:
        report = _parse(name, json.loads(path.read_text()), has_html)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        report = Report(name, "", False, (), has_html, error=f"cannot be read: {exc}")
    with _lock:
        _cache[path] = (stamp, report)
    return report


def list_reports(reports_dir: Path) -> list[Report]:
    """The newest MAX_LISTED reports, newest first."""
    if not reports_dir.is_dir():
        return []
    paths = sorted((p for p in reports_dir.glob("consistency-*.json") if _NAME.match(p.stem)), reverse=True)
    out = []
    for path in paths[:MAX_LISTED]:
        try:
            out.append(read_report(path))
        except OSError:  # removed between the listing and the read
            continue
    return out


def find(reports_dir: Path, name: str) -> Report | None:
    if not _NAME.match(name):
        return None
    return next((r for r in list_reports(reports_dir) if r.name == name), None)


def features_svg(report: Report) -> str:
    """One stacked bar per feature: mismatch, missing and extra rates (full width 100%)."""
    rows = []
    for i, f in enumerate(report.features):
        y = i * _ROW_H
        rows.append(f'<text x="0" y="{y + 14}" font-size="12">{html.escape(f.feature)}</text>')
        x = float(_LABEL_W)
        for kind, rate in (("mismatch", f.mismatch), ("missing", f.missing), ("extra", f.extra)):
            if rate > 0:
                w = max(rate * _BAR_W, 1.0)
                rows.append(
                    f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{_ROW_H - 6}" '
                    f'fill="{COLOURS[kind]}"><title>{kind} {rate:.2%}</title></rect>'
                )
                x += w
        label = "0 (exact)" if f.disagree == 0 else f"{f.disagree:.2%}"
        rows.append(f'<text x="{_LABEL_W + _BAR_W + 8}" y="{y + 14}" font-size="12">{label}</text>')
    axis = _ROW_H * len(report.features) + 4
    legend = "".join(
        f'<rect x="{_LABEL_W + 100 * i}" y="{axis + 6}" width="10" height="10" fill="{c}"/>'
        f'<text x="{_LABEL_W + 100 * i + 14}" y="{axis + 15}" font-size="12">{k}</text>'
        for i, (k, c) in enumerate(COLOURS.items())
    )
    width, height = _LABEL_W + _BAR_W + 80, axis + 24
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
        f'font-family="sans-serif"><line x1="{_LABEL_W}" y1="0" x2="{_LABEL_W}" y2="{axis}" '
        f'stroke="#999"/>{"".join(rows)}{legend}</svg>'
    )


def trend_svg(reports: list[Report]) -> str:
    """Oldest to newest, one bar per report: its worst feature's disagreement rate
    (green at 0, red above), on a scale of the largest one (at least 1%)."""
    if not reports:
        return ""
    chron = list(reversed(reports))
    top = max(0.01, *(r.worst for r in chron))
    height, bar = 80, 8
    bars = []
    for i, r in enumerate(chron):
        h = max(2.0, r.worst / top * (height - 10))
        fill = "#2a9d8f" if r.worst == 0 and r.ok else "#d62728"
        bars.append(
            f'<a href="/reports/{html.escape(r.name)}"><rect x="{i * (bar + 3)}" y="{height - h:.1f}" '
            f'width="{bar}" height="{h:.1f}" fill="{fill}"><title>{html.escape(r.at)}: worst feature '
            f"{r.worst:.2%}</title></rect></a>"
        )
    width = len(chron) * (bar + 3) + 60
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height + 4}" '
        f'font-family="sans-serif">{"".join(bars)}<text x="{width - 56}" y="12" font-size="10">'
        f"max {top:.2%}</text></svg>"
    )
