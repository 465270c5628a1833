"""Scoring requests in, score records out: parsing, formatting and offset bookkeeping.

Pure logic, no I/O. A scoring request is a transaction event as the `transactions`
topic carries it (JSON: txn_id, user_id, merchant_id, amount, country, ...). The
fields a request must carry are not listed here: they are the feature service's join
keys and on-demand request fields (`FeatureLayout.entity_fields`), so a service over
other entities needs no code change. A message that cannot be scored comes back as a
`Rejected` value (it goes to the dead-letter topic), never as an exception.
"""

from __future__ import annotations

import functools
import json
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

# Python types a JSON field may have for each Feast dtype (bool is an int in Python:
# refused for numeric fields explicitly).
_ACCEPTS: dict[str, tuple[type, ...]] = {
    "int32": (int,),
    "int64": (int,),
    "float32": (int, float),
    "float64": (int, float),
    "string": (str,),
    "bool": (bool,),
}


class ScoringRequest(NamedTuple):
    txn_id: str
    fields: tuple[Any, ...]  # values of the layout's entity_fields, in that order
    received_ns: int  # monotonic clock when the worker got it: latency starts here
    partition: int
    offset: int


# ScoringRequest((txn_id, fields, received_ns, partition, offset)) without the
# NamedTuple's Python-level __new__: 0.27 us instead of 0.67 us per request (measured),
# which matters at 100k requests/s in one process.
new_request = functools.partial(tuple.__new__, ScoringRequest)


class Rejected(NamedTuple):
    partition: int
    offset: int
    reason: str


def parse_request(
    raw: bytes,
    fields: Sequence[tuple[str, str]],
    received_ns: int,
    partition: int = 0,
    offset: int = 0,
) -> ScoringRequest | Rejected:
    """One Kafka message value -> a request, or the reason it cannot be scored."""
    try:
        event = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return Rejected(partition, offset, f"not JSON: {exc}")
    if not isinstance(event, dict):
        return Rejected(partition, offset, "not a JSON object")
    txn_id = event.get("txn_id")
    if not isinstance(txn_id, str) or not txn_id:
        return Rejected(partition, offset, "field 'txn_id' is missing or not a string")
    values = []
    for name, dtype in fields:
        value = event.get(name)
        accepts = _ACCEPTS.get(dtype, (str, int, float))
        if value is None or not isinstance(value, accepts) or (isinstance(value, bool) and dtype != "bool"):
            return Rejected(partition, offset, f"field {name!r} is missing or not {dtype}")
        values.append(value)
    return new_request((txn_id, tuple(values), received_ns, partition, offset))


def entity_columns(
    requests: Sequence[ScoringRequest], fields: Sequence[tuple[str, str]]
) -> dict[str, list[Any]]:
    """Requests -> the tensor call's entity columns (join keys and request fields)."""
    columns = list(zip(*(r.fields for r in requests), strict=True)) if requests else []
    return {name: list(columns[i]) if columns else [] for i, (name, _) in enumerate(fields)}


# Characters that need escaping in a JSON string (or that we leave to json.dumps).
_NOT_PLAIN = re.compile(r'["\\\x00-\x1f\x7f-\U0010ffff]')


def score_records(
    requests: Sequence[ScoringRequest], scores: np.ndarray, fingerprint: str, done_ns: int
) -> list[bytes]:
    """One JSON record per request: txn_id, score, model fingerprint, latency (ms from
    the worker receiving the request to its score existing). The score is written with
    9 significant digits, which round-trip a float32 exactly.

    One format per record, ids escaped by json.dumps only when one needs it: ~0.55 us
    per record instead of ~1.7 us (measured, 4096 records)."""
    ids = [r.txn_id for r in requests]
    plain = not _NOT_PLAIN.search("".join(ids))
    quoted = [f'"{i}"' for i in ids] if plain else [json.dumps(i) for i in ids]
    received = np.fromiter((r.received_ns for r in requests), np.int64, len(requests))
    latency_ms = ((done_ns - received) / 1e6).tolist()
    tail = f',"model":"{fingerprint}","latency_ms":'
    return [
        f'{{"txn_id":{q},"score":{score:.9g}{tail}{lat:.3f}}}'.encode()
        for q, score, lat in zip(quoted, scores.tolist(), latency_ms, strict=True)
    ]


@dataclass
class _Open:
    batch_id: int
    next_offsets: dict[int, int]  # partition -> last offset in the batch + 1
    done: bool = False


class CommitTracker:
    """Which Kafka offsets are safe to commit: those of the batches that are scored
    and written, up to the first that is not (batches finish out of order when
    several feature fetches are in flight; a commit must never skip an unscored one).

    Batches must be opened in the order their messages were consumed."""

    def __init__(self) -> None:
        self._open: deque[_Open] = deque()
        self._by_id: dict[int, _Open] = {}
        self._next_id = 0
        self._ready: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._open)

    def open(self, requests: Sequence[ScoringRequest]) -> int:
        offsets: dict[int, int] = {}
        for r in requests:
            if r.offset + 1 > offsets.get(r.partition, -1):
                offsets[r.partition] = r.offset + 1
        entry = _Open(self._next_id, offsets)
        self._next_id += 1
        self._open.append(entry)
        self._by_id[entry.batch_id] = entry
        return entry.batch_id

    def done(self, batch_id: int) -> None:
        self._by_id.pop(batch_id).done = True
        while self._open and self._open[0].done:
            for partition, offset in self._open.popleft().next_offsets.items():
                self._ready[partition] = max(offset, self._ready.get(partition, 0))

    def take(self) -> dict[int, int]:
        """Partition -> next offset to read, for everything finished since the last take."""
        ready, self._ready = self._ready, {}
        return ready
