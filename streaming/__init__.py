"""Streaming: the Beam job Kafka -> Redis (tiles, latest values) + Parquet (raw events,
computed rows).

Public API (imported lazily: `featureline stream --help` must not load Beam):

- `plan_stream(settings, repo, start_from=, only_views=, shard=, assigned=)` -> `StreamPlan`
- consumer-group membership (several processes sharing topics): streaming.group
- `run_stream(plan, runner="DirectRunner")`: run until `STOP` is set (SIGTERM), drained
- `STOP`: the threading.Event that drains the job
- `BatchParser`, `OnlineSink`, `OfflineSink`, `view_update`: the pieces, for reuse/tests
- `TOTALS`: the running job's counters (events, dead letters, late, freshness)
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "plan_stream": ("featureline.streaming.pipeline", "plan_stream"),
    "run_stream": ("featureline.streaming.pipeline", "run"),
    "StreamPlan": ("featureline.streaming.pipeline", "StreamPlan"),
    "STOP": ("featureline.streaming.kafka_read", "STOP"),
    "BatchParser": ("featureline.streaming.parse", "BatchParser"),
    "OnlineSink": ("featureline.streaming.redis_sink", "OnlineSink"),
    "OfflineSink": ("featureline.streaming.parquet_sink", "OfflineSink"),
    "view_update": ("featureline.streaming.tiles", "view_update"),
    "TOTALS": ("featureline.streaming.metrics", "TOTALS"),
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'streaming' has no attribute {name!r}")
    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)
