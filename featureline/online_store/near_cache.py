"""Replies of read commands kept in the serving process until Redis says their key changed.

Redis's server-assisted client-side caching (CLIENT TRACKING, RESP2 redirect mode): the
read connection is tracked, Redis remembers every key it read, and when such a key is
written, expires or is evicted Redis pushes its name on `__redis__:invalidate` to a
second connection of ours, which drops it here (online_store.redis.aio wires both).

What is cached is Redis's reply, not a feature value: ttl (OUTSIDE_MAX_AGE) and window
bounds are still worked out at each request's own time from the cached bytes, so a
cached reply gives the same response a fresh read would, as long as the key has not
changed. After a write, a process may serve the old bytes until the invalidation reaches
it (typically well under a millisecond on one host): the same staleness a replica read
has. Off unless `featureline serve --near-cache-keys N` asks for it.

Races, and why nothing stale stays: a read's reply and an invalidation of one of its
keys travel on different connections, so either may arrive first. Every invalidation
bumps a sequence number and, while reads are in flight, records it per key; a reply is
stored only if none of its key's invalidations came after the read was sent. Losing
either connection drops everything (`clear`): invalidations may have been missed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class NearCache:
    """Command bytes -> (reply, version), and per key the commands cached for it (a
    command names its key, so one lookup per command finds a reply: ~4,000 lookups
    for a 1,000-row fraud_model_v1 read). A version is never reused, so what a reader
    derives from replies (window values) can be memoized under their versions instead
    of a digest of their bytes: a changed key comes back with a new version."""

    def __init__(self, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys}")
        self.max_keys = max_keys
        self._replies: dict[bytes, tuple[Any, int]] = {}
        self._commands_of: dict[bytes, list[bytes]] = {}
        self._version = 0
        self._sequence = 0
        self._invalidated_at: dict[bytes, int] = {}
        self._in_flight = 0
        self.epoch = 0  # bumped by clear(): replies of reads sent before are not stored
        self.hits = 0
        self.misses = 0

    def lookup(self, commands: list[bytes]) -> list[tuple[Any, int] | None]:
        """(reply, version) per command, None where it is not cached."""
        found = list(map(self._replies.get, commands))
        missed = found.count(None)
        self.misses += missed
        self.hits += len(found) - missed
        return found

    def begin(self) -> tuple[int, int]:
        """Before sending reads: a token for `store` / `abort`."""
        self._in_flight += 1
        return self.epoch, self._sequence

    def store(self, token: tuple[int, int], items: Iterable[tuple[bytes, bytes, Any]]) -> list[int | None]:
        """Keep the replies (key, command, reply) of a read sent at `token`, except those
        of keys invalidated since (or all, if the connections were lost meanwhile);
        returns each item's version (None: not kept)."""
        self._in_flight -= 1
        epoch, sent_at = token
        items = list(items)
        versions: list[int | None] = []
        if epoch != self.epoch:
            # Cleared while the read was out (a connection lost, a Sentinel failover
            # re-pointed the reader): the replies are served, none kept.
            versions = [None] * len(items)
        else:
            if len(self._commands_of) >= self.max_keys:
                self._replies.clear()
                self._commands_of.clear()
            invalidated = self._invalidated_at
            for key, command, reply in items:
                if invalidated.get(key, -1) <= sent_at:
                    self._version += 1
                    # Tuples of bytes (not hiredis's lists): the collector untracks them,
                    # so a cache of 10^5-10^6 replies adds nothing to each GC pass
                    # (as lists, full collections walking them doubled a warm read).
                    kept = tuple(reply) if isinstance(reply, list) else reply
                    if command not in self._replies:
                        self._commands_of.setdefault(key, []).append(command)
                    self._replies[command] = (kept, self._version)
                    versions.append(self._version)
                else:
                    versions.append(None)
        if not self._in_flight:
            self._invalidated_at.clear()  # no read can race an earlier invalidation now
        return versions

    def abort(self, token: tuple[int, int]) -> None:
        """The read failed: store nothing."""
        self.store(token, ())

    def invalidate(self, keys: Iterable[bytes] | None) -> None:
        """Redis's invalidation message: these keys changed (None: every key, FLUSHALL)."""
        self._sequence += 1
        if keys is None:
            self.clear()
            return
        for key in keys:
            for command in self._commands_of.pop(key, ()):
                self._replies.pop(command, None)
            if self._in_flight:
                self._invalidated_at[key] = self._sequence

    def clear(self) -> None:
        """Drop everything and every read in flight (a connection was lost, so
        invalidations may have been missed; or Redis flushed every key)."""
        self.epoch += 1
        self._replies.clear()
        self._commands_of.clear()

    def __len__(self) -> int:
        return len(self._commands_of)
