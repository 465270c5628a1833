"""An in-memory OnlineStore, for unit tests of the logic behind the seam (the stream
sink's exactly-once rules, writers' LWW): the same answers as the Redis adapter, as
plain dicts. Not a product store: no expiry clock, no sharing between processes.

`fail_after_keys` injects a crash inside `apply_tiles`: after that many tile hashes of
one call are written the call raises, as a process killed between two key writes (on a
cluster, between two slots' scripts) would leave the store.
"""

from __future__ import annotations

from collections.abc import Sequence

from featureline.online.feast_format import (
    encode_timestamp,
    encode_value,
    feature_field,
    order_field,
    ts_field,
)
from featureline.online_store.base import (
    MARK_PREFIX,
    NO_MARK,
    LatestRow,
    StoreUnavailableError,
    TileSet,
    TileWrite,
)
from featureline.semantics import latest_order_key
from featureline.specs import ViewSpec


def _order(raw: bytes) -> tuple[int, int]:
    event, _, created = raw.partition(b":")
    return int(event), int(created)


class MemoryStore:
    """OnlineStore over dicts: hashes, strings (watermarks) and expiry times (ms)."""

    def __init__(self) -> None:
        self.hashes: dict[bytes, dict[bytes, bytes]] = {}
        self.strings: dict[bytes, bytes] = {}
        self.expire_at_ms: dict[bytes, int] = {}
        self.fail_after_keys: int | None = None
        self.closed = False

    def write_latest(self, view: ViewSpec, rows: Sequence[LatestRow], *, key_ttl_s: int = 0) -> int:
        ofield, tfield = order_field(view.name), ts_field(view.name)
        written = 0
        for row in rows:
            stored = self.hashes.setdefault(row.redis_key, {})
            new = latest_order_key(row.event_us, row.created_us)
            old = stored.get(ofield)
            if old is not None and new < _order(old):
                continue
            stored[ofield] = b"%d:%d" % new
            for f in view.features:
                stored[feature_field(view.name, f.name)] = encode_value(f.dtype, row.values.get(f.name))
            stored[tfield] = encode_timestamp(row.event_us)
            written += 1
        return written

    def read_tiles(
        self, fields: Sequence[tuple[bytes, bytes]], mark_keys: Sequence[bytes], mark: bytes
    ) -> tuple[list[bytes | None], list[int]]:
        values = [self.hashes.get(key, {}).get(fld) for key, fld in fields]
        marks = [
            int(m) if (m := self.hashes.get(key, {}).get(mark)) is not None else NO_MARK for key in mark_keys
        ]
        return values, marks

    def apply_tiles(
        self, writes: Sequence[TileWrite], mark: bytes, new_mark: int, now_ms: int
    ) -> list[bytes]:
        conflicts: list[bytes] = []
        done = 0
        for write in writes:
            stored = self.hashes.get(write.key, {})
            current = int(stored[mark]) if mark in stored else NO_MARK
            if current != write.expected:
                conflicts.append(write.key)
                continue
            if self.fail_after_keys is not None and done >= self.fail_after_keys:
                raise StoreUnavailableError(f"injected: killed after {done} tile hashes")
            stored = self.hashes.setdefault(write.key, {})
            stored.update(write.fields)
            stored[mark] = b"%d" % new_mark
            if write.prune_before_s > 0:
                for name in [n for n in stored if not n.startswith(MARK_PREFIX)]:
                    if int(name.partition(b":")[0]) < write.prune_before_s:
                        del stored[name]
            if write.expire_at_ms > self.expire_at_ms.get(write.key, 0):
                self.expire_at_ms[write.key] = write.expire_at_ms
            done += 1
        return conflicts

    def set_tiles(self, sets: Sequence[TileSet]) -> int:
        for one in sets:
            self.hashes.setdefault(one.key, {}).update(one.fields)
            self.expire_at_ms[one.key] = max(self.expire_at_ms.get(one.key, 0), one.expire_at_ms)
        return sum(len(s.fields) for s in sets)

    def get_watermark(self, key: bytes | str) -> int | None:
        raw = self.strings.get(key.encode() if isinstance(key, str) else key)
        return int(raw) if raw is not None else None

    def raise_watermark(self, key: bytes | str, value: int) -> bool:
        current = self.get_watermark(key)
        if current is not None and current >= value:
            return False
        self.strings[key.encode() if isinstance(key, str) else key] = b"%d" % value
        return True

    def after_write(self) -> None:
        """Nothing to replicate."""

    def ping(self) -> bool:
        return not self.closed

    def close(self) -> None:
        self.closed = True
