"""Parse and validate a batch of Kafka messages against the source schema.

Errors are values: a bad message becomes a `DeadLetter` (with the field and why) and
the rest of the batch goes on. The common case is columnar: orjson per message
(~1 us), then one `pa.array` per column; only a column that fails to convert is
re-checked value by value to find the bad rows.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from featureline.expectations import ViewExpectations, check
from featureline.offline import TS_TYPE
from featureline.semantics import US
from featureline.streaming.batches import DeadLetter, ParsedBatch, RawBatch
from featureline.streaming.schema import SourceSchema

# Events stamped further ahead than this are refused (clock bugs, unit mix-ups such as
# milliseconds read as seconds): they would sit in a future tile and count in windows
# before they happened. 5 min matches the demo source's watermark delay.
DEFAULT_MAX_FUTURE_S = 300
_CONVERT_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)

Decoder = Callable[[bytes], Any]


def _ts_us(value: Any) -> int:
    """One event time -> microseconds (UTC). Strings are ISO 8601 (no zone = UTC),
    numbers are epoch seconds, datetimes (Avro) are taken as they are."""
    if isinstance(value, str):
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    elif isinstance(value, datetime):
        ts = value
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected an ISO 8601 string or epoch seconds, got {value!r:.40}")
    else:
        return value * US if isinstance(value, int) else round(value * US)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def _timestamp_column(values: list[Any]) -> pa.Array:
    """Fast path: Arrow parses ISO strings with a zone in C++; else per value."""
    if values and all(type(v) is str for v in values):
        try:
            return pc.cast(pa.array(values, pa.string()), TS_TYPE)
        except _CONVERT_ERRORS:
            pass
    return pa.array([None if v is None else _ts_us(v) for v in values], pa.int64()).cast(TS_TYPE)


def _convert(values: list[Any], dtype: pa.DataType) -> pa.Array:
    if dtype == TS_TYPE:
        return _timestamp_column(values)
    return pa.array(values, dtype)


def _column(values: list[Any], dtype: pa.DataType, name: str, bad: dict[int, str]) -> pa.Array:
    """Convert one column; a value that does not fit is nulled and recorded in `bad`."""
    try:
        return _convert(values, dtype)
    except _CONVERT_ERRORS:
        pass
    clean: list[Any] = []
    for i, v in enumerate(values):
        try:
            _convert([v], dtype)
            clean.append(v)
        except _CONVERT_ERRORS as exc:
            bad.setdefault(i, f"field {name!r}: expected {dtype}, got {v!r:.60} ({exc})")
            clean.append(None)
    return _convert(clean, dtype)


class BatchParser:
    """Turns RawBatches of one topic into ParsedBatches. `now` is injectable for tests."""

    def __init__(
        self,
        schema: SourceSchema,
        *,
        max_future_s: int = DEFAULT_MAX_FUTURE_S,
        now: Callable[[], float] = time.time,
        expectations: tuple[ViewExpectations, ...] = (),
    ) -> None:
        self.schema = schema
        # Only rules on the message's own fields: a view's computed outputs are not here.
        names = set(schema.names)
        self.expectations = tuple(
            ViewExpectations(e.view, e.policy, rules, e.keys, e.timestamp_field)
            for e in expectations
            if (rules := tuple(r for r in e.rules if r.per_row and (not r.field or r.field in names)))
        )
        self.max_future_us = max_future_s * US
        self._now = now
        self._names = schema.names
        self._required = frozenset(schema.names)
        self._decode = _avro_decoder(schema.avro_schema) if schema.avro_schema else orjson.loads

    def _decode_all(self, batch: RawBatch) -> tuple[list[dict[str, Any]], list[int], list[DeadLetter]]:
        docs: list[dict[str, Any]] = []
        rows: list[int] = []
        dead: list[DeadLetter] = []
        required = self._required
        kind = self.schema.message_format.upper()
        for i, raw in enumerate(batch.values):
            try:
                doc = self._decode(raw if raw is not None else b"")
            except Exception as exc:  # any decoder error means: not a valid message
                dead.append(self._dead(batch, i, f"malformed {kind}: {exc}"))
                continue
            if type(doc) is not dict:
                dead.append(self._dead(batch, i, f"not a {kind} object: {type(doc).__name__}"))
            elif not doc.keys() >= required:
                missing = [n for n in self._names if n not in doc]
                dead.append(self._dead(batch, i, f"missing field(s): {', '.join(missing)}"))
            else:
                docs.append(doc)
                rows.append(i)
        return docs, rows, dead

    def _dead(self, batch: RawBatch, i: int, error: str) -> DeadLetter:
        return DeadLetter(batch.topic, batch.partition, batch.offsets[i], batch.values[i], error)

    def parse(self, batch: RawBatch) -> ParsedBatch:
        docs, rows, dead = self._decode_all(batch)
        bad: dict[int, str] = {}
        columns = [_column([d[n] for d in docs], t, n, bad) for n, t in self.schema.fields]
        offsets = np.asarray(batch.offsets, dtype=np.int64)[rows]
        created_ms = np.asarray(batch.timestamps_ms, dtype=np.int64)[rows]
        # A record without a timestamp (-1, pre-0.10 format) gets the time we read it.
        created_ms = np.where(created_ms >= 0, created_ms, int(self._now() * 1000))
        table = pa.table(
            [*columns, pa.array(created_ms * 1000).cast(TS_TYPE),
             pa.array(np.full(len(rows), batch.partition, dtype=np.int32)), pa.array(offsets)],
            schema=self.schema.raw_arrow_schema(),
        )  # fmt: skip
        self._check_required(table, bad)
        self._check_future(table, bad)
        violations = self._check_expectations(table, bad) if self.expectations else {}
        if bad:
            keep = np.ones(len(rows), dtype=bool)
            for j, error in sorted(bad.items()):
                keep[j] = False
                dead.append(self._dead(batch, rows[j], error))
            table = table.filter(pa.array(keep))
            dead.sort(key=lambda d: d.offset)
        return ParsedBatch(
            batch.topic, batch.partition, batch.first_offset, batch.last_offset, table,
            dead, len(batch), batch.high_watermark, batch.offsets, batch.values, violations,
        )  # fmt: skip

    def _check_expectations(self, table: pa.Table, bad: dict[int, str]) -> dict[tuple[str, ...], int]:
        """Counts by (view, field, rule, action); under a view's dead_letter policy the
        breaking rows join `bad` with the reason (the DLQ record carries it)."""
        counts: dict[tuple[str, ...], int] = {}
        for exp in self.expectations:
            for found in check(table, exp, table_rules=False):
                rule = found.rule
                key = (rule.view, rule.field, rule.kind, exp.policy)
                counts[key] = counts.get(key, 0) + len(found.rows)
                if exp.policy == "dead_letter":
                    for j in found.rows.tolist():
                        if j not in bad:
                            bad[j] = found.reason(table, j)
        return counts

    def _check_required(self, table: pa.Table, bad: dict[int, str]) -> None:
        for name in self.schema.required:
            nulls = pc.is_null(table[name])
            if pc.any(nulls).as_py():
                for j in np.flatnonzero(nulls.to_numpy(zero_copy_only=False)):
                    bad.setdefault(int(j), f"field {name!r} is null")

    def _check_future(self, table: pa.Table, bad: dict[int, str]) -> None:
        ts_name = self.schema.timestamp_field
        limit_us = int(self._now() * US) + self.max_future_us
        ts = table[ts_name].cast(pa.int64()).to_numpy(zero_copy_only=False)
        future = np.flatnonzero(np.nan_to_num(ts.astype(np.float64), nan=0.0) > limit_us)
        for j in future:
            ahead_s = (int(ts[j]) - (limit_us - self.max_future_us)) / US
            bad.setdefault(
                int(j),
                f"field {ts_name!r} is {ahead_s:.0f} s in the future "
                f"(more than the {self.max_future_us // US} s allowed)",
            )


def _avro_decoder(schema: dict[str, Any]) -> Decoder:
    import fastavro

    parsed = fastavro.parse_schema(schema)

    def decode(raw: bytes) -> Any:
        return fastavro.schemaless_reader(io.BytesIO(raw), parsed, None)

    return decode
