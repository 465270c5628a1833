"""A drift report (JSON, one entry per feature) and its Prometheus exposition.

    featureline_feature_drift_psi{reference,view,feature}   PSI (absent: not compared)
    featureline_feature_drift{reference,view,feature}       1 drifted, 0 not
    featureline_feature_drift_p_value{reference,view,feature}
    featureline_feature_drift_report_timestamp_seconds{reference}

`reference` names the report (a model's feature service, or the pinned date range), so
two reports on the same feature are two series, never a duplicate one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from featureline.errors import BadInputError
from featureline.stats.drift import FeatureDrift, Thresholds, compare
from featureline.stats.table import StatsSet

FORMAT = "featureline.drift"
VERSION = 1


@dataclass
class DriftReport:
    name: str
    reference: dict[str, Any]  # the reference's source (StatsSet.source)
    current: dict[str, Any]
    thresholds: Thresholds
    features: list[FeatureDrift]
    created_at: float = field(default_factory=time.time)

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.drifted]

    def to_json(self) -> str:
        body = {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "created_at": self.created_at,
            "reference": self.reference,
            "current": self.current,
            "thresholds": {"psi": self.thresholds.psi, "p_value": self.thresholds.p_value},
            "drifted": len(self.drifted),
            "features": [f.to_dict() for f in self.features],
        }
        return json.dumps(body, indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, origin: str = "report") -> DriftReport:
        try:
            d = json.loads(text)
            if d.get("format") != FORMAT or d.get("version") != VERSION:
                raise ValueError(f"not {FORMAT} version {VERSION}")
            t = Thresholds(float(d["thresholds"]["psi"]), float(d["thresholds"]["p_value"]))
            features = [FeatureDrift(**_tuples(f)) for f in d["features"]]
            return cls(str(d["name"]), d["reference"], d["current"], t, features, float(d["created_at"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise BadInputError(f"{origin} is not a Featureline drift report: {exc}") from None


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    """A FeatureDrift's JSON: its lists back to tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def drift_report(name: str, reference: StatsSet, current: StatsSet, thresholds: Thresholds) -> DriftReport:
    """Every feature of the reference that the recent data has too, in the reference's order."""
    recent = current.by_key()
    out: list[FeatureDrift] = []
    for ref in reference.features:
        cur = recent.get(ref.key)
        ref_total = ref.total()
        cur_total = cur.total() if cur is not None else None
        if ref_total is None or cur_total is None:
            continue
        out.append(compare(ref.view, ref.feature, ref_total, cur_total, thresholds))
    if not out:
        raise BadInputError(
            "the reference and the recent data share no feature: "
            f"reference {sorted(f'{v}:{f}' for v, f in reference.by_key())[:10]}, "
            f"recent {sorted(f'{v}:{f}' for v, f in recent)[:10]}"
        )
    return DriftReport(name, reference.source, current.source, thresholds, out)


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else ("+Inf" if value > 0 else "-Inf")


_HELP = {
    "featureline_feature_drift_psi": "Population stability index of a feature against the reference",
    "featureline_feature_drift": "1 when the feature drifted (PSI over its threshold and p under its)",
    "featureline_feature_drift_p_value": "Two-sample test p-value (KS numeric, chi-square categorical)",
    "featureline_feature_drift_report_timestamp_seconds": "When the drift report was made",
}


def exposition(reports: list[DriftReport]) -> str:
    """Prometheus text format of every report's features (one HELP/TYPE per metric)."""
    samples: dict[str, list[str]] = {name: [] for name in _HELP}
    for report in reports:
        ref = _escape(report.name)
        samples["featureline_feature_drift_report_timestamp_seconds"].append(
            f'{{reference="{ref}"}} {_number(report.created_at)}'
        )
        for f in report.features:
            labels = f'{{reference="{ref}",view="{_escape(f.view)}",feature="{_escape(f.feature)}"}}'
            samples["featureline_feature_drift"].append(f"{labels} {1 if f.drifted else 0}")
            if f.psi is not None:
                samples["featureline_feature_drift_psi"].append(f"{labels} {_number(f.psi)}")
            if f.p_value is not None:
                samples["featureline_feature_drift_p_value"].append(f"{labels} {_number(f.p_value)}")
    lines: list[str] = []
    for name, rows in samples.items():
        lines += [f"# HELP {name} {_HELP[name]}", f"# TYPE {name} gauge"]
        lines += [f"{name}{row}" for row in rows]
    return "\n".join(lines) + "\n"
