"""What REST and gRPC share: auth, limits, the read, and the metrics of a request.

`ServingCore` lives in one event loop (one per worker process); the two transports
only parse requests and encode responses around it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from featureline.dtypes import NUMERIC_DTYPES
from featureline.online_store import (
    OnlineReader as StoreReader,
)
from featureline.online_store import (
    StoreReplyError,
    StoreTimeoutError,
    StoreUnavailableError,
)
from featureline.serving_api import metrics
from featureline.serving_api.auth import TokenAuth
from featureline.serving_api.entities import row_count
from featureline.serving_api.frame import FeatureFrame
from featureline.serving_api.limits import (
    DeadlineExceededError,
    Limits,
    OverloadedError,
    UnauthenticatedError,
    check_entities,
    classify,
)
from featureline.serving_api.online_reader import OnlineReader, PendingRead
from featureline.serving_api.plans import ReadPlan
from featureline.specs import RepoSpec

if TYPE_CHECKING:
    from featureline.serving_api.feature_log import FeatureLogger

T = TypeVar("T")


@dataclass(init=False)  # a compiled __init__ (serving_api.frame says why)
class FeatureQuery:
    """One request, transport-neutral (not changed after it is made)."""

    refs: list[str] | None
    service: str | None
    entities: Mapping[str, Sequence[Any]]
    full_feature_names: bool = False

    def __init__(self, refs: list[str] | None, service: str | None,
                 entities: Mapping[str, Sequence[Any]],
                 full_feature_names: bool = False) -> None:  # fmt: skip
        self.refs = refs
        self.service = service
        self.entities = entities
        self.full_feature_names = full_feature_names


@dataclass(frozen=True)
class LayoutColumn:
    name: str
    view: str
    feature: str
    dtype: str
    in_tensor: bool
    on_demand: bool

    def to_dict(self) -> dict[str, Any]:
        # Explicit: a compiled (mypyc) dataclass has no __dict__ for vars() or orjson.
        return {"name": self.name, "view": self.view, "feature": self.feature, "dtype": self.dtype,
                "in_tensor": self.in_tensor, "on_demand": self.on_demand}  # fmt: skip


@dataclass(frozen=True)
class Layout:
    join_keys: list[str]
    request_fields: list[str]
    columns: list[LayoutColumn]

    def to_dict(self) -> dict[str, Any]:
        return {"join_keys": self.join_keys, "request_fields": self.request_fields,
                "columns": [c.to_dict() for c in self.columns]}  # fmt: skip


class InFlight:
    """Counts a process's requests waiting on the store; refuses beyond the limit (no
    queueing). Here, compiled with the core, because every read acquires it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def acquire(self) -> None:
        """One more request in flight (OverloadedError past the limit)."""
        if self.count >= self.limit:
            raise OverloadedError(
                f"server busy: {self.count} requests in flight in this process "
                f"(limit {self.limit}); retry shortly"
            )
        self.count += 1

    def release(self) -> None:
        self.count -= 1


class ServingCore:
    def __init__(
        self,
        repo: RepoSpec,
        redis: StoreReader,
        limits: Limits | None = None,
        auth: TokenAuth | None = None,
        feature_log: FeatureLogger | None = None,
    ) -> None:
        self.repo = repo
        # Feature logging (serving_api.feature_log): None when no service is logged.
        self.feature_log = feature_log
        self.redis = redis
        self.limits = limits or Limits()
        self.auth = auth
        self.reader = OnlineReader(repo, redis)
        self.in_flight = InFlight(self.limits.max_in_flight)

    def authenticate(self, authorization: str | None) -> frozenset[str] | None:
        """The caller's access (None: auth is off). Transports call this before parsing
        the request, so an anonymous caller learns nothing about the API or the
        features (401 comes before 400 and 404)."""
        return self.auth.scope(authorization) if self.auth is not None else None

    def _plan(self, query: FeatureQuery, scope: frozenset[str] | None) -> ReadPlan:
        if self.auth is not None and scope is None:
            raise UnauthenticatedError("missing bearer token (Authorization: Bearer <token>)")
        plan = self.reader.plan(query.refs, query.service, query.full_feature_names)
        if scope is not None:
            TokenAuth.check(scope, plan, query.service)
        return plan

    def get_online(
        self,
        query: FeatureQuery,
        *,
        scope: frozenset[str] | None = None,
        time_remaining_s: float | None = None,
    ) -> FeatureFrame | Awaitable[FeatureFrame]:
        """The frame itself when it is served from memory (near cache), else an
        awaitable of it. Bad input raises here, before any I/O."""
        return self.serve(query, _same, None, scope=scope, time_remaining_s=time_remaining_s)

    def serve(
        self,
        query: FeatureQuery,
        then: Callable[[FeatureFrame], T],
        failed: Callable[[Exception], T] | None,
        *,
        scope: frozenset[str] | None = None,
        time_remaining_s: float | None = None,
    ) -> T | asyncio.Future[T]:
        """`then(frame)` at once when the frame is served from memory (near cache),
        else a future of it, completed by a callback on the Redis read: no task and no
        coroutine per request (BENCHMARKS.md, "Request path"). A failed read completes
        the future with `failed(error)` (None: with the error); an error raised by
        `then` itself is the future's. Bad input raises here, before any I/O, and so
        does a full server (OverloadedError)."""
        plan = self._plan(query, scope)
        n_rows = row_count(query.entities)
        if n_rows > self.limits.max_entities:
            check_entities(n_rows, self.limits)  # raises, saying what the limit is
        timeout = self.limits.redis_timeout_s
        if time_remaining_s is not None:
            if time_remaining_s <= 0:
                raise DeadlineExceededError("the request's deadline passed before it was read")
            timeout = min(timeout, time_remaining_s)
        t_us = time.time_ns() // 1000
        started = self.reader.start(plan, query.entities, t_us)
        if isinstance(started, FeatureFrame):
            self._served(started, query)
            return then(started)
        self.in_flight.acquire()
        try:
            source = self.reader.send(started, timeout)
            if not isinstance(source, asyncio.Future):  # a cluster or Sentinel read
                source = asyncio.ensure_future(source)
        except BaseException:
            self.in_flight.release()
            self.reader.failed(started)
            raise
        future: asyncio.Future[T] = source.get_loop().create_future()
        source.add_done_callback(_Completion(self, started, query, then, failed, future).run)
        return future

    def _served(self, frame: FeatureFrame, query: FeatureQuery) -> None:
        metrics.observe_staleness(frame.columns, frame.t_us)
        if self.feature_log is not None and query.service is not None:
            self.feature_log.offer(query.service, frame, query.entities)

    def describe(self, query: FeatureQuery, *, scope: frozenset[str] | None = None) -> Layout:
        plan = self._plan(query, scope)
        columns = [
            LayoutColumn(
                name=name,
                view=f.view,
                feature=f.feature,
                dtype=f.dtype,
                in_tensor=f.dtype in NUMERIC_DTYPES,
                on_demand=f.on_demand,
            )
            for f, name in zip(plan.outputs, plan.output_names, strict=True)
        ]
        return Layout(list(plan.join_keys), list(plan.request_fields), columns)

    async def healthy(self) -> bool:
        """Really asks Redis (PING, 0.5 s budget)."""
        return await self.redis.ping(0.5)


def _same(frame: FeatureFrame) -> FeatureFrame:
    return frame


def _count_store_error(exc: BaseException) -> None:
    if isinstance(exc, StoreTimeoutError):
        metrics.observe_redis_error("timeout")
    elif isinstance(exc, StoreUnavailableError):
        metrics.observe_redis_error("unavailable")
    elif isinstance(exc, StoreReplyError):
        metrics.observe_redis_error("reply")


class _Completion(Generic[T]):
    """The end of one request's read: the callback on its Redis future."""

    def __init__(self, core: ServingCore, pending: PendingRead, query: FeatureQuery,
                 then: Callable[[FeatureFrame], T], failed: Callable[[Exception], T] | None,
                 future: asyncio.Future[T]) -> None:  # fmt: skip
        self.core = core
        self.pending = pending
        self.query = query
        self.then = then
        self.failed = failed
        self.future = future

    def run(self, source: asyncio.Future[list[Any]]) -> None:
        core = self.core
        core.in_flight.release()
        error = asyncio.CancelledError() if source.cancelled() else source.exception()
        if error is not None:
            core.reader.failed(self.pending)
            _count_store_error(error)
            self._fail(error)
            return
        if self.future.done():  # the caller went away (a reset gRPC stream)
            core.reader.failed(self.pending)
            return
        try:
            frame = core.reader.complete(self.pending, source.result())
            core._served(frame, self.query)
        except Exception as exc:
            self._fail(exc)
            return
        try:
            value = self.then(frame)
        except Exception as exc:  # the caller's own (an encoder's), passed on as it is
            self.future.set_exception(exc)
            return
        self.future.set_result(value)

    def _fail(self, error: BaseException) -> None:
        future = self.future
        if future.done():
            return
        if self.failed is not None and isinstance(error, Exception):
            try:
                value = self.failed(error)
            except Exception as exc:
                future.set_exception(exc)
                return
            future.set_result(value)
        elif isinstance(error, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(error)


class RequestTimer:
    """Measures one request and records it with its outcome."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.start = time.perf_counter()
        self.n_rows = 0

    def done(self, code: str) -> None:
        metrics.observe_request(self.endpoint, self.n_rows, time.perf_counter() - self.start, code)

    def failed(self, exc: BaseException) -> tuple[int, str, str]:
        http, grpc_name, message = classify(exc)
        self.done(grpc_name if self.endpoint.startswith("grpc") else str(http))
        return http, grpc_name, message
