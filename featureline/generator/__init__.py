"""Seeded, realistic card transactions for the demo, tests and benchmarks.

`generate_events(config)` builds valid events as an Arrow table (numpy, ~0.5 s per
million); `kafka_batch` / `kafka_records` add JSON encoding and ~0.1% malformed
messages; `produce` sends them; `write_raw_events` and `write_batch_sources` write
Parquet. Heavy modules (numpy, pyarrow, kafka) load on first use of those names, so
`featureline generate --help` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from featureline.generator.config import GeneratorConfig, make_config, parse_rate, parse_start

_LAZY = {
    "generate_events": "featureline.generator.table",
    "population": "featureline.generator.model",
    "EVENT_COLUMNS": "featureline.generator.model",
    "KafkaBatch": "featureline.generator.encode",
    "kafka_batch": "featureline.generator.encode",
    "kafka_records": "featureline.generator.encode",
    "MALFORMED_KINDS": "featureline.generator.encode",
    "produce": "featureline.generator.producer",
    "ProduceReport": "featureline.generator.producer",
    "RAW_SCHEMA": "featureline.generator.parquet",
    "RAW_SUBDIR": "featureline.generator.parquet",
    "raw_events_table": "featureline.generator.parquet",
    "write_raw_events": "featureline.generator.parquet",
    "user_profile_table": "featureline.generator.parquet",
    "labels_table": "featureline.generator.parquet",
    "write_batch_sources": "featureline.generator.parquet",
}

__all__ = ["GeneratorConfig", "make_config", "parse_rate", "parse_start", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'featureline.generator' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
