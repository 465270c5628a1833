"""Latest values of a plain view: pick one row per entity, encode it, write it LWW.

The pick is semantics.md 1 over the rows of the range: the largest (event time,
created time) per entity, a missing created time losing to any present one
(featureline.semantics.latest_order_key), done as one Arrow sort.

The write is the shared event-time last-write-wins of featureline.online.writer: the
same Lua script (`LATEST_LWW_LUA`) with the same argument layout and chunk size
(`CHUNK_KEYS` entities per call), so a streamed value with a newer event time is never
overwritten, whichever writer comes second. Only the argument building differs: it
takes columns encoded at once (batch.materialize.encode) instead of row objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch.backfill.events import CREATED_US, TS_US
from batch.materialize.encode import encode_column, encode_keys, encode_orders, encode_timestamps
from featureline.offline import KAFKA_OFFSET
from featureline.online.feast_format import feature_field, order_field, ts_field
from featureline.online.writer import CHUNK_KEYS, LATEST_LWW_LUA
from featureline.specs import ViewSpec


def latest_per_key(rows: pa.Table, view: ViewSpec) -> pa.Table:
    """One row per entity: the largest (TS_US, created) (semantics.latest_order_key).

    `rows` has the join keys, TS_US and CREATED_US (-1 when the row has no created
    time). Rows with a null key are dropped. Only the sort columns are sorted and only
    the winners are gathered (1M rows -> 100k entities: ~0.35 s instead of ~0.9 s).
    """
    keys = list(view.join_key_names)
    for k in keys:
        if rows[k].null_count:
            rows = rows.filter(pc.is_valid(rows[k]))
    if rows.num_rows == 0:
        return rows
    sort_keys = [*((k, "ascending") for k in keys), (TS_US, "descending"), (CREATED_US, "descending")]
    if KAFKA_OFFSET in rows.column_names:
        # A full tie goes to the later message, as streaming's LWW write (>=) decides it.
        sort_keys.append((KAFKA_OFFSET, "descending"))
    order = pc.sort_indices(rows.select([name for name, _ in sort_keys]), sort_keys=sort_keys)
    first = np.zeros(len(order), dtype=bool)
    first[0] = True
    for k in keys:
        col = rows[k].take(order).to_numpy(zero_copy_only=False)
        first[1:] |= col[1:] != col[:-1]
    return rows.take(order.filter(pa.array(first)))


@dataclass(frozen=True)
class EncodedRows:
    """A view's latest rows, encoded: what one LWW script call per chunk needs."""

    keys: list[bytes]
    orders: list[bytes]
    timestamps: list[bytes]
    columns: list[list[bytes]]  # one per feature, in view.features order

    def __len__(self) -> int:
        return len(self.keys)

    def slice(self, lo: int, hi: int) -> EncodedRows:
        return EncodedRows(
            self.keys[lo:hi],
            self.orders[lo:hi],
            self.timestamps[lo:hi],
            [c[lo:hi] for c in self.columns],
        )


def encode_rows(rows: pa.Table, view: ViewSpec, project: str, has_created: bool) -> EncodedRows:
    """Encode latest rows (join keys, TS_US, CREATED_US, features) in Feast's format."""
    ts = rows[TS_US].to_numpy()
    created = rows[CREATED_US].to_numpy()
    has = np.full(len(ts), has_created) & (created >= 0) if has_created else np.zeros(len(ts), bool)
    keys = encode_keys(
        project,
        view.join_key_names,
        [k.dtype for k in view.join_keys],
        [rows[k] for k in view.join_key_names],
    )
    columns = [encode_column(f.dtype, rows[f.name]) for f in view.features]
    return EncodedRows(keys, encode_orders(ts, created, has), encode_timestamps(ts), columns)


class LatestLwwWriter:
    """Sends EncodedRows with the shared LWW script, `CHUNK_KEYS` entities per call."""

    def __init__(self, client: Any, view: ViewSpec) -> None:
        self._client = client
        self._sha = client.script_load(LATEST_LWW_LUA)
        self._order_field = order_field(view.name)
        self._ts_field = ts_field(view.name)
        self._fields = [feature_field(view.name, f.name) for f in view.features]

    def queue(self, pipe: Any, rows: EncodedRows) -> int:
        """Queue the script calls for `rows` on `pipe`; returns the calls queued."""
        calls = 0
        for lo in range(0, len(rows), CHUNK_KEYS):
            part = rows.slice(lo, lo + CHUNK_KEYS)
            streams: list[Any] = [part.orders]
            for fld, col in zip(self._fields, part.columns, strict=True):
                streams += [repeat(fld), col]
            streams += [repeat(self._ts_field), part.timestamps]
            # repeat() is endless: zip stops with the finite columns (all of one length).
            argv = chain.from_iterable(zip(*streams, strict=False))
            pipe.execute_command(
                "EVALSHA", self._sha, len(part), *part.keys,
                self._order_field, len(self._fields) + 1, *argv,
            )  # fmt: skip
            calls += 1
        return calls

    def write(self, rows: EncodedRows, calls_per_round_trip: int = 8) -> int:
        """Write all rows; returns how many entities took the new value (others kept a
        newer one). `calls_per_round_trip` script calls are pipelined per round trip."""
        written = 0
        step = CHUNK_KEYS * calls_per_round_trip
        for lo in range(0, len(rows), step):
            pipe = self._client.pipeline(transaction=False)
            self.queue(pipe, rows.slice(lo, lo + step))
            written += sum(int(n) for n in pipe.execute())
        return written
