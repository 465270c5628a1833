"""What REST and gRPC share: auth, limits, the read, and the metrics of a request.

`ServingCore` lives in one event loop (one per worker process); the two transports
only parse requests and encode responses around it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    InFlight,
    Limits,
    UnauthenticatedError,
    check_entities,
    classify,
)
from featureline.serving_api.online_reader import OnlineReader, PendingRead
from featureline.serving_api.plans import ReadPlan
from featureline.specs import RepoSpec

if TYPE_CHECKING:
    from featureline.serving_api.feature_log import FeatureLogger


@dataclass(frozen=True)
class FeatureQuery:
    """One request, transport-neutral."""

    refs: list[str] | None
    service: str | None
    entities: Mapping[str, Sequence[Any]]
    full_feature_names: bool = False


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
        awaitable of it. Bad input raises here, before any I/O. The transports call
        this so that a request answered from memory needs no task and no await."""
        plan = self._plan(query, scope)
        check_entities(row_count(query.entities), self.limits)
        timeout = self.limits.redis_timeout_s
        if time_remaining_s is not None:
            if time_remaining_s <= 0:
                raise DeadlineExceededError("the request's deadline passed before it was read")
            timeout = min(timeout, time_remaining_s)
        t_us = time.time_ns() // 1000
        started = self.reader.start(plan, query.entities, t_us)
        if isinstance(started, FeatureFrame):
            metrics.observe_staleness(started.columns, t_us)
            if self.feature_log is not None and query.service is not None:
                self.feature_log.offer(query.service, started, query.entities)
            return started
        return self._finish(started, t_us, timeout, query)

    async def _finish(
        self, pending: PendingRead, t_us: int, timeout_s: float, query: FeatureQuery
    ) -> FeatureFrame:
        with self.in_flight:
            try:
                frame = await self.reader.finish(pending, t_us, timeout_s)
            except StoreTimeoutError:
                metrics.observe_redis_error("timeout")
                raise
            except StoreUnavailableError:
                metrics.observe_redis_error("unavailable")
                raise
            except StoreReplyError:
                metrics.observe_redis_error("reply")
                raise
        metrics.observe_staleness(frame.columns, frame.t_us)
        if self.feature_log is not None and query.service is not None:
            self.feature_log.offer(query.service, frame, query.entities)
        return frame

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
