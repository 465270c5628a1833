"""WAIT: writes acknowledged by replicas before the stream job commits what they cover.

Redis replicates asynchronously: the primary answers a write before any replica has it,
so a primary that dies right after loses its last writes, and the replica promoted in
its place never had them. If the stream job had already committed the Kafka offsets (or
moved the partition watermark) of those events, they would be lost for good; with
`wait_for_replicas` after the batch's writes and BEFORE the commit, a failover can only
lose writes whose offsets were not committed, and the replay after it re-applies them.

Why a marker write: WAIT blocks until the replicas acknowledged the replication offset
of the last write made on *its own connection*; on a connection that wrote nothing it
proves nothing (redis-cli's `WAIT 1 300` on redis 6.2, its only replica SIGSTOPped,
answered 1 at once). The batch's writes may have gone out on other connections of the
pool (or of other processes), so a marker is written first on the connection that
WAITs, in one pipeline. The replication stream is one
ordered log per primary: the marker's offset is above every write the primary had
applied before it, from any connection, so replicas acknowledging the marker hold all
of them too. (`append_wait` puts WAIT in a pipeline that already writes, which covers
the same without the marker.) On a cluster the log is per primary: one marker per
primary, with a key in one of its slots.

Settings (env only; feature_store.yaml's online_store cannot carry them, since Feast's
RedisOnlineStoreConfig forbids unknown keys and its connection_string options go to
redis-py): FEATURELINE_REDIS_WAIT_REPLICAS, default 0 = off (as Feast, which never
WAITs), and FEATURELINE_REDIS_WAIT_TIMEOUT_MS, default 1000. Fewer acknowledgements
than asked within the timeout raise ServiceUnavailableError: the caller must not commit
offsets; it retries the batch (the writes are idempotent) until a replica is back or
the operator lowers the setting.

The trade-off, measured on loopback (one primary, one replica, the dev stack's
redis-server 6.2, redis-py 7.4, a 2-core machine under load ~4-8; medians of 3,000,
three runs): `wait_for_replicas(client, 1, 1000)` (marker + WAIT in one round trip)
takes 0.22-0.31 ms, where the same round trip without WAIT (SET + PING) takes
0.15-0.19 ms: the replica's acknowledgement adds ~0.1 ms, and the call as a whole
~0.25 ms per batch, against 0.9-1.5 ms for a redis-py pipeline of 100 HSETs (p99s were
5-11 ms for all three, the machine's load). It is paid per batch, not per event; over a
network add one primary -> replica round trip (0.2-1 ms within a zone). With WAIT off,
a failover can lose the writes the replica had not received yet (its lag: on loopback
well under 1 ms, in practice up to `INFO replication`'s offset difference) even though
their offsets are committed. A hung replica costs the whole timeout per batch, then
the error.
"""

from __future__ import annotations

from typing import Any

from featureline.config import RedisConfig
from featureline.errors import BadInputError, ServiceUnavailableError

MARKER_KEY = "featureline:durability:wait"
# The marker only has to exist long enough to be replicated; then it goes away by itself
# (it is never read), so turning WAIT off leaves nothing behind.
MARKER_TTL_MS = 60_000


def wait_for_replicas(client: Any, replicas: int, timeout_ms: int, *, marker_key: str = MARKER_KEY) -> int:
    """Block until `replicas` replicas hold every write the primary of `client` (a
    redis-py client, Sentinel-managed or not) applied so far; returns how many did.

    `replicas` 0: off, returns 0 without a round trip. Raises ServiceUnavailableError
    when fewer acknowledged within `timeout_ms`, or the primary failed; the client's
    socket_timeout must be longer than `timeout_ms` (else it reads as a failure)."""
    if replicas <= 0:
        return 0
    _check_timeout(timeout_ms)
    import redis

    pipe = client.pipeline(transaction=False)
    pipe.set(marker_key, b"1", px=MARKER_TTL_MS)
    append_wait(pipe, replicas, timeout_ms)
    try:
        _, acked = pipe.execute()
    except (redis.RedisError, OSError) as exc:
        raise ServiceUnavailableError(
            f"Redis at {where(client)}: the replica acknowledgement (WAIT {replicas} {timeout_ms}) "
            f"failed ({exc}); the writes before it are not known to be safe"
        ) from None
    return check_acks(int(acked), replicas, timeout_ms, where(client))


def append_wait(pipe: Any, replicas: int, timeout_ms: int) -> None:
    """Put WAIT at the end of a pipeline that writes (one connection): its reply, the
    last of the pipeline's, goes to `check_acks`."""
    _check_timeout(timeout_ms)
    pipe.execute_command("WAIT", replicas, timeout_ms)


def check_acks(acked: int, replicas: int, timeout_ms: int, address: str) -> int:
    if acked < replicas:
        raise ServiceUnavailableError(
            f"Redis at {address}: only {acked} of {replicas} replica(s) acknowledged the writes "
            f"within {timeout_ms} ms (FEATURELINE_REDIS_WAIT_REPLICAS/_TIMEOUT_MS); they could be "
            "lost in a failover, so they are not committed"
        )
    return acked


def wait_if_configured(client: Any, cfg: RedisConfig) -> int:
    """The stream job's after-write hook: WAIT as the configuration asks (0: off)."""
    return wait_for_replicas(client, cfg.wait_replicas, cfg.wait_timeout_ms)


def where(client: Any) -> str:
    """host:port of a redis-py client's server, from its pool's public attributes (a
    Sentinel pool knows the primary it last connected to)."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    if "host" in kwargs:
        return f"{kwargs['host']}:{kwargs.get('port', 6379)}"
    master = getattr(pool, "master_address", None)
    if master:
        return f"{master[0]}:{master[1]}"
    return f"the primary of {getattr(pool, 'service_name', '?')}"


def _check_timeout(timeout_ms: int) -> None:
    if timeout_ms <= 0:  # WAIT n 0 blocks forever: a dead replica would stop the job
        raise BadInputError(f"FEATURELINE_REDIS_WAIT_TIMEOUT_MS must be > 0, got {timeout_ms}")
