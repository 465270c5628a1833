"""Redis Sentinel: the primary found through the sentinels, and followed after a failover.

Configured as Feast configures it (feature_store.yaml)::

    online_store:
      type: redis
      redis_type: redis_sentinel
      sentinel_master: mymaster
      connection_string: "s1:26379,s2:26379,s3:26379,password=...,ssl=true"

The host:port items are the sentinels (RedisConfig.nodes); the options (password,
username, db, ssl*) are the data nodes', as in Feast, which passes them to redis-py's
`Sentinel(nodes, **options)`: redis-py applies them to the primary's connections and
only the socket_* options to the sentinels. So, as with Feast, the sentinels are
reached over plain TCP without a login; a Sentinel that needs its own password or TLS is
not supported (Feast cannot configure one either).

Three entry points:
- `discover_primary(cfg)`: asks the sentinels in turn (SENTINEL get-master-addr-by-name)
  and checks with ROLE that the node named is a master. Errors name the node: a
  Sentinel that does not know the master (BadInputError: the sentinel_master or the
  connection_string is wrong), no Sentinel reachable, or the named node not a master
  (a failover is under way: ServiceUnavailableError, retryable).
- `sentinel_client(cfg)`: a sync redis-py client from the public
  `redis.sentinel.Sentinel(...).master_for(name)`; each new connection asks the sentinels
  where the primary is, and a connection to a demoted primary is dropped on its first
  READONLY reply, so writers follow a failover (their commands in between fail with
  redis.ConnectionError; callers retry the batch).
- `SentinelReader`: the read side of the seam (`fetch`, `near_cache`, `ping`, `close`)
  around the fast asyncio client of the serving path, re-pointed after a failover.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from featureline.config import RedisConfig
from featureline.errors import BadInputError, ServiceUnavailableError
from featureline.online_store.base import StoreTimeoutError
from featureline.online_store.redis.connect import plain_client, redis_error, redis_kwargs

Address = tuple[str, int]

# One sentinel or ROLE round trip on a LAN is < 1 ms; 0.5 s bounds a dead host without
# making a three-sentinel discovery (the worst case: 3 x 0.5 s + the ROLE check) slower
# than the serving path's usual request budget of a few seconds.
DISCOVERY_TIMEOUT_S = 0.5


def sentinel_nodes(cfg: RedisConfig) -> tuple[Address, ...]:
    return cfg.nodes or ((cfg.host, cfg.port),)


def primary_config(cfg: RedisConfig, address: Address) -> RedisConfig:
    """The single-node config of the discovered primary: its address, the data nodes'
    login and TLS options of `cfg` (what redis-py's master_for applies too)."""
    host, port = address
    return dataclasses.replace(cfg, host=host, port=port, redis_type="redis", nodes=((host, port),))


class _NoAnswer(NamedTuple):
    """Why a sentinel named no primary: a line for the error, and whether it is the
    configuration's fault (a wrong node or master name) rather than a node that is down."""

    text: str
    misconfigured: bool


def _ask_sentinel(address: Address, master: str, timeout_s: float) -> Address | _NoAnswer:
    """The primary one sentinel names, or why it names none."""
    import redis

    host, port = address
    client = plain_client(host=host, port=port, timeout_s=timeout_s)
    where = f"Sentinel {host}:{port}"
    try:
        reply = client.execute_command("SENTINEL", "get-master-addr-by-name", master)
    except redis.AuthenticationError:  # NOAUTH: a data node with a password, or a locked sentinel
        return _NoAnswer(
            f"{where} asks for a login: not a Sentinel, or one with a password (unsupported)", True
        )
    except redis.ResponseError as exc:  # a plain Redis: unknown command 'SENTINEL'
        return _NoAnswer(f"{where} is not a Sentinel ({exc})", True)
    except (redis.RedisError, OSError) as exc:
        return _NoAnswer(f"{where} does not answer ({exc or type(exc).__name__})", False)
    finally:
        client.close()
    if not reply:
        return _NoAnswer(f"{where} does not know a master named {master!r}", True)
    return _text(reply[0]), int(reply[1])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def primary_role(cfg: RedisConfig, address: Address, timeout_s: float) -> str:
    """ROLE of a data node ('master', 'slave'), logged in with the data nodes' options.
    A login or TLS failure is the configuration's fault (BadInputError)."""
    import redis

    node = primary_config(cfg, address)
    kwargs = {k: v for k, v in redis_kwargs(node).items() if k not in ("host", "port")}
    client = plain_client(host=node.host, port=node.port, timeout_s=timeout_s, **kwargs)
    try:
        reply = client.execute_command("ROLE")
    except (redis.RedisError, OSError) as exc:
        raise redis_error(node, exc) from None
    finally:
        client.close()
    return _text(reply[0])


def discover_primary(cfg: RedisConfig, timeout_s: float = DISCOVERY_TIMEOUT_S) -> Address:
    """(host, port) of the current primary of `cfg.sentinel_master`, checked with ROLE.

    The sentinels are asked in the configured order until one names a node that says it
    is a master: during a failover one sentinel may still name the old primary while
    another already names the new one."""
    master = cfg.sentinel_master
    problems: list[str] = []
    misconfigured = named = False
    for address in sentinel_nodes(cfg):
        answer = _ask_sentinel(address, master, timeout_s)
        if isinstance(answer, _NoAnswer):
            problems.append(answer.text)
            misconfigured |= answer.misconfigured
            continue
        named = True
        problem = _not_a_primary(cfg, address, answer, timeout_s)
        if problem is None:
            return answer
        problems.append(problem)
    detail = "; ".join(problems)
    if misconfigured and not named:
        # A node that is no Sentinel, or knows no such master: retrying cannot help.
        raise BadInputError(
            f"online_store sentinel_master {master!r}: {detail}; check sentinel_master and the "
            "sentinels in online_store.connection_string"
        )
    raise ServiceUnavailableError(f"no primary for Redis Sentinel master {master!r}: {detail}")


def _not_a_primary(cfg: RedisConfig, sentinel: Address, named: Address, timeout_s: float) -> str | None:
    """None when the node a sentinel named is a master, else why not (retryable: the
    node is down or not promoted yet). A refused login raises BadInputError."""
    where = f"Sentinel {sentinel[0]}:{sentinel[1]} names {named[0]}:{named[1]}"
    where += f" as primary of {cfg.sentinel_master!r}"
    try:
        role = primary_role(cfg, named, timeout_s)
    except ServiceUnavailableError as exc:
        return f"{where}, which does not answer ({exc})"
    if role == "master":
        return None
    return f"{where}, but its ROLE is {role!r} (a failover is under way)"


def sentinel_client(cfg: RedisConfig, *, check: bool = True, timeout_s: float = 5.0, **options: Any) -> Any:
    """A sync redis-py client of the Sentinel-managed primary, following failovers.

    `check`: discover the primary once first, so that a wrong configuration fails here
    with the clear errors of `discover_primary` rather than as redis-py's
    MasterNotFoundError on the first command. `options` go to the primary's connections
    (socket_timeout, ...); the sentinels get `timeout_s` and no retries."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    from redis.sentinel import Sentinel

    if cfg.redis_type != "redis_sentinel":
        raise BadInputError(f"online_store redis_type is {cfg.redis_type!r}, not redis_sentinel")
    if check:
        discover_primary(cfg, min(timeout_s, DISCOVERY_TIMEOUT_S))
    data_options = {k: v for k, v in redis_kwargs(cfg).items() if k not in ("host", "port")}
    data_options.setdefault("socket_connect_timeout", timeout_s)
    sentinel_options = {
        "socket_connect_timeout": min(timeout_s, DISCOVERY_TIMEOUT_S),
        "socket_timeout": min(timeout_s, DISCOVERY_TIMEOUT_S),
        "retry": Retry(NoBackoff(), 0),
    }
    sentinel = Sentinel(list(sentinel_nodes(cfg)), sentinel_kwargs=sentinel_options, **data_options)
    return sentinel.master_for(cfg.sentinel_master, **options)


class ReadClient(Protocol):
    """What SentinelReader needs of the single-node asyncio client (serving's
    RedisClient): packed commands in, replies out, ServiceUnavailableError when Redis
    is unreachable or fails."""

    near_cache: Any

    async def execute_packed(
        self, payload: bytes, expected: int, timeout_s: float | None = None
    ) -> list[Any]: ...

    async def ping(self, timeout_s: float = 0.5) -> bool: ...

    def close(self) -> None: ...


# (config of the primary, near cache or None) -> a client of that one node; the seam's
# open_reader passes `lambda c, cache: RedisClient.from_config(c, near_cache=cache)`.
ClientFactory = Callable[[RedisConfig, Any], ReadClient]
Discover = Callable[[RedisConfig, float], Address]


class SentinelReader:
    """The seam's async read side on a Sentinel-managed primary.

    Holds one single-node client (made by `client_factory`: serving's fast RedisClient)
    pointed at the discovered primary. Nothing is read from an address that discovery has not
    just checked with ROLE:
    - when a request fails with ServiceUnavailableError (connection lost or refused, a
      connection closed as stalled, an error reply), the client becomes suspect (one
      request's own timeout does not: it fails that request only) and the next request
      first re-discovers (at most once per `rediscover_interval_s`; requests meanwhile
      fail at once with ServiceUnavailableError, which serving answers 503/UNAVAILABLE).
      The same primary confirmed keeps the client; another one replaces it (the near
      cache is cleared: the new primary's invalidations start from nothing).
      Without this a killed primary restarted before the sentinels demote it would be
      reconnected to by the client itself and serve its old (or, without persistence,
      empty) data.
    - while requests flow, the sentinels are asked again in the background every
      `recheck_interval_s`, so a primary demoted behind a connection that stays up (a
      partition that heals) is left within about that long; until then reads are those of
      a replica, which lags by its replication delay (the staleness of any replica read).
    A failed discovery is reported as ServiceUnavailableError even when its cause is the
    configuration (a sentinel that does not know the master): `connect()` raises that
    one as BadInputError, so the seam's open_reader can fail at start-up instead.
    """

    def __init__(
        self,
        cfg: RedisConfig,
        client_factory: ClientFactory,
        *,
        near_cache: Any = None,
        # A Sentinel failover takes seconds (down-after-milliseconds, then an election):
        # one discovery per 200 ms finds the new primary within 200 ms of its promotion,
        # at <= 5 sentinel round trips a second per process.
        rediscover_interval_s: float = 0.2,
        # Bounds how long reads may go to a primary demoted behind a live connection, at
        # one sentinel round trip a second per process while requests flow.
        recheck_interval_s: float = 1.0,
        discovery_timeout_s: float = DISCOVERY_TIMEOUT_S,
        discover: Discover = discover_primary,
    ) -> None:
        self.cfg = cfg
        self._client_factory = client_factory
        self._near_cache = near_cache
        self.rediscover_interval_s = rediscover_interval_s
        self.recheck_interval_s = recheck_interval_s
        self.discovery_timeout_s = discovery_timeout_s
        self._discover = discover
        self._client: ReadClient | None = None
        self.primary: Address | None = None  # the confirmed primary
        self._suspect = True
        self._verifying: asyncio.Task[ReadClient] | None = None
        self._recheck: asyncio.Task[None] | None = None
        self._attempted_at = -1e9
        self._checked_at = 0.0
        self._last_error = "not discovered yet"
        self.failovers = 0  # primaries replaced after the first (for tests and metrics)

    @property
    def near_cache(self) -> Any:
        return self._near_cache

    @property
    def address(self) -> str:
        """Where reads go, for health answers: the primary, and the master's name."""
        where = f"{self.primary[0]}:{self.primary[1]}" if self.primary else "no primary yet"
        return f"{where} (sentinel master {self.cfg.sentinel_master!r})"

    async def connect(self) -> Address:
        """The first discovery, with its errors as they are (BadInputError for a
        configuration no sentinel knows): for start-up checks."""
        address = await asyncio.to_thread(self._discover, self.cfg, self.discovery_timeout_s)
        self._use(address)
        return address

    async def fetch(
        self, commands: Sequence[bytes], keys: Sequence[bytes], timeout_s: float | None = None
    ) -> list[Any]:
        """Replies of the RESP-packed `commands` in order (`keys`: one per command, unused
        on a single primary). ServiceUnavailableError while no primary is confirmed."""
        client = await self._current(timeout_s)
        try:
            return await client.execute_packed(b"".join(commands), len(commands), timeout_s)
        except StoreTimeoutError:
            # This request's budget ran out; the connection and the primary stay (the
            # client drops its late replies). A primary that is stuck is closed by the
            # client's stall watchdog, and that failure makes it suspect.
            raise
        except ServiceUnavailableError as exc:
            if client is self._client:
                self._suspect = True
                self._last_error = str(exc)
            raise

    async def ping(self, timeout_s: float = 0.5) -> bool:
        try:
            client = await self._current(timeout_s)
        except ServiceUnavailableError:
            return False
        ok = await client.ping(timeout_s)
        if not ok and client is self._client:
            self._suspect = True
        return ok

    def close(self) -> None:
        for task in (self._verifying, self._recheck):
            if task is not None:
                task.cancel()
        self._verifying = self._recheck = None
        self._drop()

    # --- discovery ---------------------------------------------------------------------

    async def _current(self, timeout_s: float | None) -> ReadClient:
        """The client to use now: confirmed first when suspect (or none yet)."""
        client = self._client
        if client is None or self._suspect:
            return await self._verified(timeout_s)
        if time.monotonic() - self._checked_at > self.recheck_interval_s:
            self._start_recheck()
        return client

    async def _verified(self, timeout_s: float | None) -> ReadClient:
        """A client of a primary confirmed just now: the discovery in flight, or a new
        one unless the last one started less than rediscover_interval_s ago."""
        task = self._verifying
        if task is None:
            now = time.monotonic()
            if now - self._attempted_at < self.rediscover_interval_s:
                raise ServiceUnavailableError(
                    f"Redis Sentinel master {self.cfg.sentinel_master!r}: no primary confirmed "
                    f"({self._last_error}); re-discovering"
                )
            self._attempted_at = now
            task = self._verifying = asyncio.ensure_future(self._rediscover())
            task.add_done_callback(_retrieve)
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            raise ServiceUnavailableError(
                f"Redis Sentinel master {self.cfg.sentinel_master!r}: no primary confirmed within "
                f"{(timeout_s or 0) * 1000:.0f} ms"
            ) from None

    async def _rediscover(self) -> ReadClient:
        try:
            address = await asyncio.to_thread(self._discover, self.cfg, self.discovery_timeout_s)
        except (BadInputError, ServiceUnavailableError) as exc:
            self._drop()
            self._last_error = str(exc)
            raise ServiceUnavailableError(
                f"Redis Sentinel master {self.cfg.sentinel_master!r}: {exc}"
            ) from None
        finally:
            self._verifying = None
        return self._use(address)

    def _start_recheck(self) -> None:
        self._checked_at = time.monotonic()  # one recheck per interval, however it ends
        if self._recheck is None and self._verifying is None:
            self._recheck = asyncio.ensure_future(self._recheck_primary())

    async def _recheck_primary(self) -> None:
        """Has the primary moved? A failed check changes nothing: with the sentinels
        unreachable the primary may still be fine, and its own failures are seen by
        the requests."""
        try:
            address = await asyncio.to_thread(self._discover, self.cfg, self.discovery_timeout_s)
        except (BadInputError, ServiceUnavailableError):
            return
        finally:
            self._recheck = None
        if address != self.primary and self._verifying is None:
            self._use(address)

    def _use(self, address: Address) -> ReadClient:
        """Point at the confirmed primary: keep the client if it is the same one."""
        self._checked_at = time.monotonic()
        if self._client is not None and address == self.primary:
            self._suspect = False
            return self._client
        if self.primary is not None:
            self.failovers += 1
        self._drop()
        if self._near_cache is not None:
            self._near_cache.clear()  # replies of the old primary; its invalidations are gone
        client = self._client_factory(primary_config(self.cfg, address), self._near_cache)
        self._client, self.primary, self._suspect = client, address, False
        return client

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None
        self._suspect = True


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a discovery's error retrieved: every waiter may have timed out before it."""
    if not task.cancelled():
        task.exception()
