"""Small, seeded raw transaction events with the edge cases the semantics care about.

Rows look like what streaming stores under `<offline>/raw/transactions/`: the Kafka
source's fields plus `created`, `kafka_partition`, `kafka_offset`. The mix includes
events on tile edges, several events at one instant, null amounts, late arrivals
(created long after the event) and redelivered messages (one Kafka identity stored
twice), so every rule has something to bite on.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa

from featureline.cli.generator.parquet import RAW_SCHEMA  # the generator's raw events: one schema
from featureline.offline import raw_dir, write_partitioned
from featureline.semantics import US

# 2024-03-01T00:00:00Z: a fixed, tile-aligned origin keeps the data reproducible.
ORIGIN_US = 1_709_251_200 * US
PARTITIONS = 3


def make_events(
    n: int,
    *,
    users: int = 20,
    merchants: int = 8,
    span_s: int = 2 * 86_400,
    seed: int = 7,
    start_us: int = ORIGIN_US,
) -> pa.Table:
    rng = random.Random(seed)
    offsets = [0] * PARTITIONS
    rows: list[dict[str, object]] = []
    for i in range(n):
        user = rng.randrange(users)
        if rng.random() < 0.1 and rows:  # same instant as an earlier event
            ts = int(rows[rng.randrange(len(rows))]["event_timestamp"])  # type: ignore[call-overload]
        elif rng.random() < 0.05:  # exactly on a 5-minute tile edge
            ts = start_us + rng.randrange(span_s // 300) * 300 * US
        else:
            ts = start_us + rng.randrange(span_s * US)
        late_us = rng.randrange(3600 * US) if rng.random() < 0.05 else rng.randrange(2 * US)
        partition = user % PARTITIONS
        amount = None if rng.random() < 0.03 else round(rng.lognormvariate(3.5, 1.2), 2)
        rows.append(
            {
                "txn_id": f"t{i}",
                "user_id": user,
                "merchant_id": f"m{rng.randrange(merchants)}",
                "amount": amount,
                "currency": "EUR",
                "country": rng.choice(["FR", "DE", "US", None]),
                "event_timestamp": ts,
                "created": ts + late_us,
                "kafka_partition": partition,
                "kafka_offset": offsets[partition],
            }
        )
        offsets[partition] += 1
    redelivered = [dict(r, created=int(r["created"]) + US) for r in rng.sample(rows, n // 50)]  # type: ignore[call-overload]
    rows += redelivered
    return pa.Table.from_pylist(rows, schema=RAW_SCHEMA)


def write_raw(table: pa.Table, offline_dir: Path, topic: str = "transactions") -> Path:
    base = raw_dir(offline_dir, topic)
    write_partitioned(table, base, ts_column="event_timestamp", writer="test", replace=True)
    return base
