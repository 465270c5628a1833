"""The simulated events as one Arrow table, in emission (Kafka) order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from featureline.cli.generator.config import GeneratorConfig
from featureline.cli.generator.fastfmt import hex_ids
from featureline.cli.generator.model import COUNTRIES, CURRENCIES, TS_TYPE, simulate

# 0x9E3779B97F4A7C15 is odd, so i -> i * K mod 2^64 is a bijection: ids are unique
# within a run by construction, not by luck; the salt varies them between runs.
_ID_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def txn_ids(config: GeneratorConfig, n: int) -> pa.Array:
    """Deterministic per (seed, start): re-running with another --start gives new ids."""
    salt_rng = np.random.default_rng([config.seed, config.start_us % 2**63])
    salt = np.uint64(salt_rng.integers(0, 2**63, dtype=np.int64))
    mixed = (np.arange(n, dtype=np.uint64) * _ID_MULTIPLIER) ^ salt
    return hex_ids("tx_", mixed)


def _lookup(indices: np.ndarray, values: list[str] | np.ndarray) -> pa.Array:
    dictionary = pa.array(list(values), type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)), dictionary).cast(pa.string())


def generate_events(config: GeneratorConfig) -> pa.Table:
    """All valid events in emission order.

    Columns: the Kafka event fields (txn_id, user_id, merchant_id, amount, currency,
    country, event_timestamp) plus `created` (emission = ingestion time, >=
    event_timestamp; later for the ~1% late events) and `is_fraud` (int8 label).
    """
    pop, cols, emitted = simulate(config)
    currency_of = [CURRENCIES[c] for c in COUNTRIES]
    return pa.table(
        {
            "txn_id": txn_ids(config, len(cols.user)),
            "user_id": pa.array(pop.user_ids[cols.user], type=pa.int64()),
            "merchant_id": _lookup(cols.merchant, pop.merchant_ids),
            "amount": pa.array(cols.amount, type=pa.float64()),
            "currency": _lookup(cols.country, currency_of),
            "country": _lookup(cols.country, list(COUNTRIES)),
            "event_timestamp": pa.array(cols.ts, type=pa.int64()).cast(TS_TYPE),
            "created": pa.array(emitted, type=pa.int64()).cast(TS_TYPE),
            "is_fraud": pa.array(cols.fraud.astype(np.int8), type=pa.int8()),
        }
    )
