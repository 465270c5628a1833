"""Freshness SLOs: how old a view's served values may be, declared as a Feast tag.

    user_txn_stats = StreamFeatureView(..., tags={"freshness_slo": "2m"})

A value is a number of seconds or a number with a unit (s, m, h, d): "90", "90s", "5m",
"1h", "2d". `featureline serve` exports each view's SLO as the gauge
`featureline_view_freshness_slo_seconds{view,topic}`; the alert rules in deploy/monitoring
compare a stream view's pipeline freshness (featureline_stream_freshness_seconds{topic}:
Kafka record time to visible in Redis) with the repo's own numbers instead of one
threshold for every view. The age of a served value is not the SLO's measure: an entity
seen once a week has week-old values while the pipeline is fresh.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from featureline.errors import BadInputError
from featureline.specs import RepoSpec

TAG = "freshness_slo"
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_VALUE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration_s(text: str) -> float:
    """Seconds of "90", "90s", "5m", "1h" or "2d"; BadInputError otherwise."""
    match = _VALUE.match(text)
    if match is None:
        raise BadInputError(f"not a duration: {text!r} (use seconds, or a number with s, m, h or d: 5m)")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise BadInputError(f"a duration must be positive, not {text!r}")
    return seconds


@dataclass(frozen=True)
class FreshnessSlo:
    view: str
    topic: str  # the Kafka topic of a stream view's source; "" for a batch view
    seconds: float


def freshness_slos(repo: RepoSpec) -> list[FreshnessSlo]:
    """The SLO of every view with the tag, sorted by view name."""
    out: list[FreshnessSlo] = []
    for name, view in sorted(repo.views.items()):
        raw = view.tags.get(TAG)
        if raw is None:
            continue
        try:
            seconds = parse_duration_s(raw)
        except BadInputError as exc:
            raise BadInputError(f"feature view {name!r}: tag {TAG}: {exc}") from None
        topic = view.stream_source.topic if view.stream_source is not None else ""
        out.append(FreshnessSlo(name, topic, seconds))
    return out
