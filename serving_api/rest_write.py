"""Feast's write endpoints on the REST port: POST /push, /write-to-online-store,
/materialize and /materialize-incremental, with Feast 0.67's request bodies
(feast/feature_server.py: PushFeaturesRequest, WriteToFeatureStoreRequest,
MaterializeRequest, MaterializeIncrementalRequest) and answers (200; /push with an
empty body, the others with JSON `null`). Feast's SDK with `online_store: {type:
remote}` writes through /write-to-online-store (its push and materialize included).

Writes are rare next to reads: each runs in a thread (redis-py, Parquet), so the
event loop keeps answering reads meanwhile. Materialize runs `featureline
materialize` in a child process, as the CLI would: it needs pyarrow jobs and may
need feast to read the repo (~5 s to import, ~200 MB), which a serving worker never
imports, and a long job must not hold the worker's GIL while reads wait.
Errors are `{"detail": message}`: 400 naming the field, 404 for an unknown push
source or view, 401/403 with auth, 503 when Redis or the job fails; never a 500 for
bad input. `?async=true` is not supported: every call answers when the work is done.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from featureline.errors import BadInputError, ServiceUnavailableError
from featureline.serving_api.limits import ForbiddenError, UnauthenticatedError
from featureline.serving_api.rest_app import Headers, Reply, Result, _error_reply, _field, json_object
from featureline.serving_api.service import RequestTimer, ServingCore
from featureline.specs import ViewSpec

_NULL = b"null"


def _required(data: dict[str, Any], name: str, kind: type) -> Any:
    if data.get(name) is None:
        raise BadInputError(f"field {name!r} is required")
    return _field(data, name, kind, None)


def _instant(data: dict[str, Any], name: str) -> datetime:
    """Feast parses start_ts / end_ts with dateutil; a naive time is UTC."""
    text = _required(data, name, str)
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInputError(f"field {name!r}: {text!r} is not an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def materialize_argv(data: dict[str, Any], incremental: bool) -> list[str]:
    """The `featureline materialize` command line of a Feast materialize request."""
    argv = [sys.executable, "-m", "featureline.cli", "materialize"]
    if _field(data, "version", str, None) is not None:
        raise BadInputError("field 'version': feature view versions are not supported")
    _field(data, "full_feature_names", bool, False)  # accepted; it changes nothing stored
    if incremental:
        argv += ["--incremental", "--end", _instant(data, "end_ts").isoformat()]
    elif _field(data, "disable_event_timestamp", bool, False):
        argv += ["--start", "1970-01-01T00:00:00+00:00", "--end", datetime.now(UTC).isoformat()]
    else:
        start, end = _instant(data, "start_ts"), _instant(data, "end_ts")
        if start >= end:
            raise BadInputError(f"field 'start_ts' ({start}) must be before 'end_ts' ({end})")
        argv += ["--start", start.isoformat(), "--end", end.isoformat()]
    views = _field(data, "feature_views", list, None)
    if views is not None:
        if not views or not all(isinstance(v, str) for v in views):
            raise BadInputError("field 'feature_views' must be a non-empty list of view names")
        argv += ["--views", *views]
    return argv


class WriteHandlers:
    """The write endpoints as (body, headers) -> awaitable Reply, for the HTTP server.

    `redis_factory()` returns the writers' online store (featureline.online_store.
    open_store; made on first use); `key_ttl_s` is Feast's `key_ttl_seconds` (0: keys do not expire)."""

    def __init__(self, core: ServingCore, redis_factory: Callable[[], Any], key_ttl_s: int = 0) -> None:
        self.core = core
        self._redis_factory = redis_factory
        self._redis: Any = None
        self.key_ttl_s = key_ttl_s

    def _client(self) -> Any:
        if self._redis is None:
            self._redis = self._redis_factory()
        return self._redis

    def _authorize(self, headers: Headers, views: list[ViewSpec]) -> None:
        if self.core.auth is None:
            return
        scope = self.core.authenticate(headers.get("authorization"))
        if scope is None:
            raise UnauthenticatedError("missing bearer token (Authorization: Bearer <token>)")
        denied = [v.name for v in views if "*" not in scope and v.name not in scope]
        if denied:
            raise ForbiddenError(f"this token may not write view(s) {', '.join(denied)}")

    def push(self, body: bytes, headers: Headers) -> Result:
        return self._run("/push", body, headers, self.push_data)

    def write(self, body: bytes, headers: Headers) -> Result:
        return self._run("/write-to-online-store", body, headers, self.write_data)

    def materialize(self, body: bytes, headers: Headers) -> Result:
        return self._run("/materialize", body, headers, lambda d, h: self._materialize(d, h, False))

    def materialize_incremental(self, body: bytes, headers: Headers) -> Result:
        return self._run(
            "/materialize-incremental", body, headers, lambda d, h: self._materialize(d, h, True)
        )

    async def _run(self, endpoint: str, body: bytes, headers: Headers, work: Callable[..., Any]) -> Reply:
        timer = RequestTimer(endpoint)
        try:
            if self.core.auth is not None:  # 401 before anything about the request
                self.core.authenticate(headers.get("authorization"))
            reply = await work(json_object(body), headers)
        except Exception as exc:  # every failure becomes a status code, never a trace
            return _error_reply(exc, timer, headers)
        timer.done("200")
        return reply

    async def push_data(self, data: dict[str, Any], headers: Headers) -> Reply:
        """/push of a parsed body (also gRPC's Push)."""
        from featureline.push import PUSH_TO, push

        name = _required(data, "push_source_name", str)
        to = _field(data, "to", str, "online")
        if to not in PUSH_TO:
            raise BadInputError(f"field 'to' must be one of {', '.join(PUSH_TO)}, not {to!r}")
        _field(data, "allow_registry_cache", bool, True)
        _field(data, "transform_on_write", bool, True)
        self._authorize(headers, self.core.repo.views_of_push_source(name))
        df = _required(data, "df", dict)
        client = self._client() if to != "offline" else None
        await asyncio.to_thread(push, self.core.repo, client, name, df, to, key_ttl_s=self.key_ttl_s)
        return Reply(200, b"")

    async def write_data(self, data: dict[str, Any], headers: Headers) -> Reply:
        """/write-to-online-store of a parsed body (also gRPC's WriteToOnlineStore)."""
        from featureline.push import write_to_online_store

        name = _required(data, "feature_view_name", str)
        _field(data, "allow_registry_cache", bool, True)
        _field(data, "transform_on_write", bool, True)
        if name not in self.core.repo.on_demand_views:
            self._authorize(headers, [self.core.repo.view(name)])
        df = _required(data, "df", dict)
        repo, client = self.core.repo, self._client()
        await asyncio.to_thread(write_to_online_store, repo, client, name, df, key_ttl_s=self.key_ttl_s)
        return Reply(200, _NULL)

    async def _materialize(self, data: dict[str, Any], headers: Headers, incremental: bool) -> Reply:
        argv = materialize_argv(data, incremental)
        views = data.get("feature_views") or [
            v.name for v in self.core.repo.views.values() if v.online and v.batch_source is not None
        ]
        self._authorize(headers, [self.core.repo.view(v) for v in views])
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            lines = (err or out).decode(errors="replace").strip().splitlines()
            message = next((ln for ln in reversed(lines) if ln.startswith("error:")), "")
            message = message or (out.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            if proc.returncode == BadInputError.exit_code:
                raise BadInputError(f"materialize: {message.removeprefix('error: ')}")
            raise ServiceUnavailableError(f"materialize failed: {message.removeprefix('error: ')}")
        return Reply(200, _NULL)

    def routes(self) -> dict[str, Callable[[bytes, Headers], Result]]:
        return {
            "/push": self.push,
            "/write-to-online-store": self.write,
            "/materialize": self.materialize,
            "/materialize-incremental": self.materialize_incremental,
        }
