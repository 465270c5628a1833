"""A lean record decoder for kafka-python's consumer (message format v2).

kafka-python decodes each record into a DefaultRecord, then a ConsumerRecord with
headers, sizes and metrics: ~10 us per message here, 40 % of the stream job's CPU. The
job needs (offset, timestamp, value) only, so `install()` replaces the fetcher's
per-partition unpacking with a loop that reads just those (keys and headers are
skipped by length): ~3x less per message. Batch CRCs, control batches and the fetch
position are handled as kafka-python does; anything else (old message formats,
READ_COMMITTED, deserializers) goes through kafka-python's own code.

This is the one module that touches kafka-python's private internals (the fetcher's
`_unpack_records`, a record batch's `_buffer`/`_pos`/`_num_records`). It was written
against kafka-python 3.0 (the pin is kafka-python==3.0.*): `install()` patches only
when the installed version is one of WRITTEN_FOR and the internals it reads are there;
otherwise it logs one warning and the consumer keeps kafka-python's public path
(slower, same records). tests/streaming/test_kafka_fast.py decodes the same batches
through both paths.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, NamedTuple

import kafka
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.util import decode_varint

log = logging.getLogger(__name__)

# kafka-python (major, minor) versions whose internals this decoder was checked against.
WRITTEN_FOR = ((3, 0),)
_PartitionRecords: Any = Fetcher.PartitionRecords
_ORIGINAL: Any = getattr(_PartitionRecords, "_unpack_records", None)
_LOG_APPEND_TIME = 1
_READ_UNCOMMITTED = 0
_warned = False


class FastRecord(NamedTuple):
    offset: int
    timestamp: int
    value: bytes | None


def _v2_records(part: Any, batch: Any) -> Iterator[FastRecord]:
    batch._maybe_uncompress()
    buf = batch._buffer
    pos = batch._pos
    base_offset = batch.base_offset
    first_ts = batch.first_timestamp
    fixed_ts = batch.max_timestamp if batch.timestamp_type == _LOG_APPEND_TIME else None
    for _ in range(batch._num_records):
        length, pos = decode_varint(buf, pos)
        end = pos + length
        pos += 1  # attributes: one byte, unused
        ts_delta, pos = decode_varint(buf, pos)
        offset_delta, pos = decode_varint(buf, pos)
        key_len, pos = decode_varint(buf, pos)
        if key_len > 0:
            pos += key_len
        value_len, pos = decode_varint(buf, pos)
        value = bytes(buf[pos : pos + value_len]) if value_len >= 0 else None
        pos = end  # headers skipped
        offset = base_offset + offset_delta
        part.next_fetch_offset = offset + 1
        yield FastRecord(offset, fixed_ts if fixed_ts is not None else first_ts + ts_delta, value)
    if pos != len(buf):
        raise CorruptRecordError(f"{len(buf) - pos} unconsumed bytes after the batch's records")


def _lean_unpack_records(
    self: Any, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any
) -> Iterator[Any]:
    if key_deserializer or value_deserializer or self.isolation_level != _READ_UNCOMMITTED:
        yield from _ORIGINAL(self, tp, records, key_deserializer, value_deserializer)
        return
    batch = records.next_batch()
    last = None
    while batch is not None:
        last = batch
        if self.check_crcs and not batch.validate_crc():
            raise CorruptRecordError(
                f"Record batch for partition {tp} at offset {batch.base_offset} failed crc check"
            )
        if batch.magic != 2:
            for record in batch:  # message format v0/v1: kafka-python's records
                self.next_fetch_offset = record.offset + 1
                yield FastRecord(record.offset, record.timestamp, record.value)
        elif batch.is_control_batch:
            self.next_fetch_offset = batch.next_offset
        else:
            self.leader_epoch = batch.leader_epoch
            yield from _v2_records(self, batch)
        batch = records.next_batch()
    if last is not None and last.magic == 2:
        # v2 keeps the last offset even when compaction removed the last record.
        self.next_fetch_offset = last.next_offset
    self.drain()


def _version(text: str) -> tuple[int, int]:
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (-1, -1)


def supported(version: str | None = None) -> bool:
    """Whether the lean decoder may replace kafka-python's: the installed version is
    one it was written for and the private names it reads still exist."""
    if _version(version or kafka.__version__) not in WRITTEN_FOR:
        return False
    slots = getattr(DefaultRecordBatch, "__slots__", ())
    return (
        callable(_ORIGINAL)
        and hasattr(DefaultRecordBatch, "_maybe_uncompress")
        and all(name in slots for name in ("_buffer", "_pos", "_num_records"))
    )


def install(version: str | None = None) -> bool:
    """Use the lean decoder in this process's kafka-python consumers; False (and one
    warning per process) when this kafka-python is not one it was written for."""
    global _warned
    if not supported(version):
        if not _warned:
            _warned = True
            log.warning(
                "kafka-python %s is not a version the lean record decoder was written for "
                "(%s): reading with kafka-python's own decoder (~3x more CPU per message)",
                version or kafka.__version__,
                ", ".join(f"{a}.{b}.*" for a, b in WRITTEN_FOR),
            )
        return False
    _PartitionRecords._unpack_records = _lean_unpack_records
    return True


def uninstall() -> None:
    if _ORIGINAL is not None:
        _PartitionRecords._unpack_records = _ORIGINAL
