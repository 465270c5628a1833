"""The consistency report as a text table, a self-contained HTML page (inline SVG bar
chart, no JavaScript, no external files) and JSON."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path

from featureline.cli.consistency.compare import FeatureAgreement
from featureline.cli.consistency.run import ConsistencyReport
from featureline.semantics import US

_COLOURS = {"mismatch": "#d62728", "missing": "#ff7f0e", "extra": "#1f77b4"}
_ROW_H = 22
_LABEL_W = 330
_BAR_W = 420


def _at(report: ConsistencyReport) -> str:
    return datetime.fromtimestamp(report.at_us / US, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_table(report: ConsistencyReport) -> str:
    lines = [
        f"online/offline consistency at {_at(report)}: "
        + ", ".join(f"{n} {k}" for k, n in report.entities.items())
        + " entities sampled",
        f"{'feature':<44} {'compared':>8} {'mismatch':>9} {'missing':>9} {'extra':>9}",
    ]
    for f in report.features:
        lines.append(
            f"{f.feature:<44} {f.compared:>8} {f.mismatch_rate:>9.2%} {f.missing_rate:>9.2%} "
            f"{f.extra_rate:>9.2%}"
        )
    for f in report.features:
        for ex in f.examples[:2]:
            lines.append(
                f"  e.g. {f.feature} {ex['kind']} for {ex['key']}: "
                f"online={ex['online']!r} offline={ex['offline']!r}"
            )
    if report.skipped:
        lines.append("not compared (on-demand, keys differ): " + ", ".join(report.skipped))
    lines += [f"note: {n}" for n in report.notes]
    verdict = "agree exactly" if report.ok else "DISAGREE"
    lines.append(f"{len(report.features)} features: online and offline {verdict}")
    return "\n".join(lines)


def _bar(y: int, f: FeatureAgreement) -> str:
    parts = [f'<text x="0" y="{y + 15}" font-size="12">{html.escape(f.feature)}</text>']
    x = float(_LABEL_W)
    for kind, rate in (("mismatch", f.mismatch_rate), ("missing", f.missing_rate), ("extra", f.extra_rate)):
        width = rate * _BAR_W
        if width > 0:
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 3}" width="{max(width, 1):.1f}" height="{_ROW_H - 6}" '
                f'fill="{_COLOURS[kind]}"><title>{kind} {rate:.2%}</title></rect>'
            )
            x += width
    total = f.mismatch_rate + f.missing_rate + f.extra_rate
    label = "0 (exact)" if total == 0 else f"{total:.2%}"
    parts.append(f'<text x="{_LABEL_W + _BAR_W + 8}" y="{y + 15}" font-size="12">{label}</text>')
    return "".join(parts)


def chart_svg(report: ConsistencyReport) -> str:
    """Per feature, one bar of its mismatch + missing + extra rates (full width = 100%)."""
    height = _ROW_H * (len(report.features) + 2)
    width = _LABEL_W + _BAR_W + 90
    rows = [_bar(_ROW_H * i, f) for i, f in enumerate(report.features)]
    axis_y = _ROW_H * len(report.features) + 4
    legend = "".join(
        f'<rect x="{_LABEL_W + 110 * i}" y="{axis_y + 8}" width="10" height="10" fill="{c}"/>'
        f'<text x="{_LABEL_W + 110 * i + 14}" y="{axis_y + 17}" font-size="12">{k}</text>'
        for i, (k, c) in enumerate(_COLOURS.items())
    )
    frame = (
        f'<line x1="{_LABEL_W}" y1="0" x2="{_LABEL_W}" y2="{axis_y}" stroke="#999"/>'
        f'<line x1="{_LABEL_W + _BAR_W}" y1="0" x2="{_LABEL_W + _BAR_W}" y2="{axis_y}" '
        'stroke="#ddd" stroke-dasharray="3"/>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif">{frame}{"".join(rows)}{legend}</svg>'
    )


def html_page(report: ConsistencyReport) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(f.feature)}</td><td>{f.compared}</td><td>{f.mismatches}</td>"
        f"<td>{f.missing}</td><td>{f.extra}</td><td>{f.mismatch_rate:.2%}</td>"
        f"<td>{f.missing_rate:.2%}</td><td>{f.extra_rate:.2%}</td></tr>"
        for f in report.features
    )
    verdict = "online and offline agree exactly" if report.ok else "online and offline DISAGREE"
    skipped = (
        f"<p>Not compared (on-demand, keys differ): {html.escape(', '.join(report.skipped))}</p>"
        if report.skipped
        else ""
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Featureline consistency {_at(report)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}table{{border-collapse:collapse}}
tr:nth-child(even){{background:#f4f4f4}}</style></head><body>
<h1>Online/offline consistency</h1>
<p>At {_at(report)}; entities sampled: {html.escape(json.dumps(report.entities))}.
Online: the serving path (Redis). Offline: historical retrieval at the same instant.
<b>{verdict}</b>.</p>
{chart_svg(report)}
<table><tr><th>feature</th><th>compared</th><th>mismatches</th><th>missing</th><th>extra</th>
<th>mismatch rate</th><th>missing rate</th><th>extra rate</th></tr>{rows}</table>
{skipped}
{"".join(f"<p>Note: {html.escape(n)}</p>" for n in report.notes)}
</body></html>
"""


def write_report(report: ConsistencyReport, out_dir: Path) -> tuple[Path, Path]:
    """Write consistency-<time>.html and .json under out_dir; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "consistency-" + datetime.fromtimestamp(report.at_us / US, UTC).strftime("%Y%m%dT%H%M%SZ")
    page = out_dir / f"{stem}.html"
    data = out_dir / f"{stem}.json"
    page.write_text(html_page(report))
    data.write_text(json.dumps(report.to_dict(), indent=2, default=repr))
    return page, data
