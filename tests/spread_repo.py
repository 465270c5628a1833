"""A copy of the demo repo with Feast's var/variance/std/stddev beside its per-user
functions, for the end-to-end tests (stream job, backfill, consistency, materialize).

The demo repo itself keeps its services' widths, which the models and benchmarks use;
the copies used by those tests gain the spread functions, so every path is pinned by the
naive oracle (or by exact online/offline agreement) for them too.
"""

from __future__ import annotations

from pathlib import Path

_DEMO_FUNCTIONS = 'for fn in ("count", "sum", "mean", "max")'
_SPREAD_FUNCTIONS = 'for fn in ("count", "sum", "mean", "max", "var", "variance", "std", "stddev")'


def with_spread_aggregations(repo: Path) -> None:
    features = repo / "features.py"
    text = features.read_text()
    assert _DEMO_FUNCTIONS in text, "the demo's per-user aggregations changed: update this fixture"
    features.write_text(text.replace(_DEMO_FUNCTIONS, _SPREAD_FUNCTIONS))
