"""The online-store seam: what streaming, batch, push and serving ask of the online store.

Two sides, because they have different callers and different costs:

- `OnlineStore` (sync): the writers. Latest values with event-time last-write-wins
  (featureline.online.writer's rules), tile reads and the exactly-once tile apply of the
  stream job (per-key applied-offset marks, compare-and-set per key: no transaction
  across keys, so it works the same on one node and on a cluster), watermarks, health.
- `OnlineReader` (async): the serving read path. `fetch` sends commands already packed
  in RESP (serving's PreparedRead builds them once per plan) and returns their replies
  in order; `keys` names the key each command reads, which a cluster reader routes by
  hash slot and the near cache invalidates by.

Adapters: featureline.online_store.redis (one node), and behind the same protocols the
cluster and sentinel branches; featureline.online_store.memory for unit tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from featureline.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from featureline.online_store.near_cache import NearCache
    from featureline.specs import ViewSpec

# A tile hash's applied-offset mark of one source partition: `_o:{topic}:{partition}`.
# Readers skip it (a tile field starts with its tile start, a digit or '-').
MARK_PREFIX = b"_o:"
# The mark of a key that has none (nothing of that partition applied to it yet).
NO_MARK = -1


class StoreUnavailableError(ServiceUnavailableError):
    """The online store cannot be reached (refused, reset, or recently failed)."""


class StoreTimeoutError(StoreUnavailableError):
    """The online store did not answer within the request's time budget."""


class StoreReplyError(ServiceUnavailableError):
    """The online store answered with an error (e.g. WRONGTYPE on a key we read)."""


def mark_field(topic: str, partition: int) -> bytes:
    return b"%s%s:%d" % (MARK_PREFIX, topic.encode(), partition)


@dataclass(frozen=True)
class LatestRow:
    """One entity's candidate latest row: its Redis key, order and feature values."""

    redis_key: bytes
    event_us: int
    created_us: int | None
    values: Mapping[str, Any]


@dataclass
class TileWrite:
    """One tile hash's part of a batch, applied only if the hash's mark of the batch's
    partition still is `expected` (NO_MARK: none); then the mark becomes `new_mark`.
    Housekeeping as the stream job does it: expiry moved forward only (0: unchanged),
    fields whose tile started before `prune_before_s` dropped (0: no pruning)."""

    key: bytes
    expected: int
    fields: list[tuple[bytes, bytes]] = field(default_factory=list)
    expire_at_ms: int = 0
    prune_before_s: int = 0


@dataclass
class TileSet:
    """A rebuilt tile hash (batch materialize): fields set whole, expiry forward only."""

    key: bytes
    expire_at_ms: int
    fields: list[tuple[bytes, bytes]] = field(default_factory=list)


@runtime_checkable
class OnlineStore(Protocol):
    """The writers' side of the seam (sync; one per thread or process)."""

    def write_latest(self, view: ViewSpec, rows: Sequence[LatestRow], *, key_ttl_s: int = 0) -> int:
        """Event-time LWW rows of a plain view; returns how many took the new row."""
        ...

    def read_tiles(
        self, fields: Sequence[tuple[bytes, bytes]], mark_keys: Sequence[bytes], mark: bytes
    ) -> tuple[list[bytes | None], list[int]]:
        """The stored values of (tile key, field) pairs and the `mark` field of each of
        `mark_keys` (NO_MARK where absent), in one round trip where the store allows."""
        ...

    def apply_tiles(
        self, writes: Sequence[TileWrite], mark: bytes, new_mark: int, now_ms: int
    ) -> list[bytes]:
        """Compare-and-set per key (TileWrite); returns the keys that were NOT written
        because their mark moved (a zombie or another writer): re-read and re-apply."""
        ...

    def set_tiles(self, sets: Sequence[TileSet]) -> int:
        """Rebuilt tile hashes, fields set whole; returns the fields written."""
        ...

    def get_watermark(self, key: bytes | str) -> int | None: ...

    def raise_watermark(self, key: bytes | str, value: int) -> bool:
        """Set when absent or smaller (never moves back); True when it moved."""
        ...

    def after_write(self) -> None:
        """Before a watermark or a Kafka offset moves past writes: make them durable
        (Sentinel: WAIT for a replica). Nothing to do on one node."""
        ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class OnlineReader(Protocol):
    """The serving read path's side of the seam (asyncio; shared by a process's requests)."""

    @property
    def near_cache(self) -> NearCache | None: ...

    @property
    def address(self) -> str:
        """Where it reads, for health answers and errors ("host:port", or the nodes)."""
        ...

    def fetch(
        self, commands: Sequence[bytes], keys: Sequence[bytes], timeout_s: float | None = None
    ) -> Awaitable[list[Any]]:
        """Replies of RESP-packed read commands, in order; `keys[i]` is the key
        `commands[i]` reads. An awaitable: a coroutine, or (one node, connected) the
        connection's own future, which serving chains a callback on (no task)."""
        ...

    async def ping(self, timeout_s: float = 0.5) -> bool: ...

    def close(self) -> None: ...
