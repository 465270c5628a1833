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

from featureline.cli.generator.config import GeneratorConfig, make_config, parse_rate, parse_start

_LAZY = {
    "generate_events": "featureline.cli.generator.table",
    "population": "featureline.cli.generator.model",
    "EVENT_COLUMNS": "featureline.cli.generator.model",
    "KafkaBatch": "featureline.cli.generator.encode",
    "kafka_batch": "featureline.cli.generator.encode",
    "kafka_records": "featureline.cli.generator.encode",
    "MALFORMED_KINDS": "featureline.cli.generator.encode",
    "produce": "featureline.cli.generator.producer",
    "ProduceReport": "featureline.cli.generator.producer",
    "RAW_SCHEMA": "featureline.cli.generator.parquet",
    "RAW_SUBDIR": "featureline.cli.generator.parquet",
    "raw_events_table": "featureline.cli.generator.parquet",
    "write_raw_events": "featureline.cli.generator.parquet",
    "user_profile_table": "featureline.cli.generator.parquet",
    "labels_table": "featureline.cli.generator.parquet",
    "write_batch_sources": "featureline.cli.generator.parquet",
}

__all__ = ["GeneratorConfig", "make_config", "parse_rate", "parse_start", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'featureline.cli.generator' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
