"""The REST API: its FastAPI app (OpenAPI docs, health, metrics), request parsing and
replies of the POST endpoints. What it promises is API_DESCRIPTION (also the OpenAPI
description; a constant, since compiled modules keep no docstring)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from featureline.errors import BadInputError
from featureline.serving_api import metrics
from featureline.serving_api.auth import KeysPending, after_keys, challenge
from featureline.serving_api.codec_json import frame_to_feast_json
from featureline.serving_api.codec_proto import tensor_message
from featureline.serving_api.frame import FeatureFrame
from featureline.serving_api.limits import INTERNAL_MESSAGE, UnauthenticatedError, body_too_large
from featureline.serving_api.rest_models import (
    ERROR_RESPONSES,
    GetOnlineFeaturesRequest,
    GetOnlineTensorRequest,
    HealthResponse,
    LayoutResponse,
    OnlineFeaturesResponse,
    request_body,
)
from featureline.serving_api.service import FeatureQuery, RequestTimer, ServingCore
from featureline.serving_api.tensor import frame_to_tensor

API_DESCRIPTION = """The REST API (FastAPI): Feast's `POST /get-online-features`, a tensor call, health,
metrics and OpenAPI docs.

`POST /get-online-features` accepts and answers exactly like Feast 0.67's feature
server, so a Feast REST client only changes its URL. Differences are corrections of
Feast's defects (shared/anchors.md): an entity not in the store is NOT_FOUND (Feast:
PRESENT with a null), a value past its view's ttl is OUTSIDE_MAX_AGE (Feast: PRESENT),
a stored null is NULL_VALUE, and columns come in request order (Feast's order varies).
Errors are `{"detail": message}` with 400/401/403/404/413/429/503/504; a stack trace
never leaves the server.
"""
log = logging.getLogger("featureline.serving.rest")
ARROW_STREAM: Final = "application/vnd.apache.arrow.stream"
PROTOBUF: Final = "application/x-protobuf"


JSON: Final = "application/json"
Headers = Mapping[str, str]  # lower-case names


@dataclass(init=False)  # a compiled __init__ (serving_api.frame says why)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)

    def __init__(self, status: int, body: bytes, content_type: str = JSON,
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers if headers is not None else {}


def _field(data: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BadInputError(f"field {name!r} must be a {kind.__name__}")
    return value


def _fill_value(data: dict[str, Any]) -> float:
    fill = data.get("fill_value", 0.0)
    if fill is None:
        return 0.0
    if type(fill) not in (int, float):
        raise BadInputError("field 'fill_value' must be a number")
    return float(fill)


def _tensor_options(data: dict[str, Any]) -> tuple[float, bool]:
    """(fill value, whether the request names its features: then each must be numeric)."""
    return _fill_value(data), data.get("features") is not None


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object (BadInputError saying what is wrong)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadInputError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadInputError("the request body must be a JSON object")
    return data


def parse_query(body: bytes, *, need_entities: bool = True) -> tuple[FeatureQuery, dict[str, Any]]:
    """Feast's request JSON -> FeatureQuery (BadInputError naming the bad field)."""
    data = json_object(body)
    entities = data.get("entities", None if need_entities else {})
    if not isinstance(entities, dict):
        raise BadInputError("field 'entities' must be an object of column name -> list")
    for name, values in entities.items():
        if not isinstance(values, list):
            raise BadInputError(f"entity column {name!r} must be a list of values")
    service = _field(data, "feature_service", str, None)
    features = _field(data, "features", list, [])
    if not all(isinstance(f, str) for f in features):
        raise BadInputError("field 'features' must be a list of 'view:feature' strings")
    full = _field(data, "full_feature_names", bool, False)
    if service is not None:
        return FeatureQuery(None, service, entities, full), data
    if not features:
        raise BadInputError("give 'features' (a list of 'view:feature') or 'feature_service'")
    return FeatureQuery(features, None, entities, full), data


def _error_reply(exc: BaseException, timer: RequestTimer, headers: Headers) -> Reply:
    http, _, message = timer.failed(exc)
    if http == 500:
        log.exception("error serving %s", timer.endpoint, exc_info=exc)
    extra = {}
    if isinstance(exc, UnauthenticatedError):
        extra["WWW-Authenticate"] = challenge(message if headers.get("authorization") else None)
    if http == 429:
        extra["Retry-After"] = "1"
    return Reply(http, orjson.dumps({"detail": message}), JSON, extra)


def _tensor_body(frame: FeatureFrame, options: tuple[float, bool], accept: str) -> Reply:
    parts = frame_to_tensor(frame, *options)
    if ARROW_STREAM in accept:
        import pyarrow as pa

        arrays = [
            pa.array(parts.values[:, j], mask=parts.present[:, j] == 0)
            for j in range(len(parts.column_names))
        ]
        table = pa.table(arrays, names=parts.column_names)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return Reply(200, sink.getvalue().to_pybytes(), ARROW_STREAM)
    return Reply(200, tensor_message(parts, frame.t_us), PROTOBUF)


Result = Reply | Awaitable[Reply]
# An endpoint's options from the request JSON, checked before any read (a bad one is a
# 400 without I/O), and its encoder of the frame with those options.
_Options = Callable[[dict[str, Any]], Any]
_Encode = Callable[[FeatureFrame, Any, Headers], Reply]


def _no_options(_: dict[str, Any]) -> None:
    return None


def _encode_online(frame: FeatureFrame, _: Any, __: Headers) -> Reply:
    return Reply(200, frame_to_feast_json(frame))


def _encode_tensor(frame: FeatureFrame, options: Any, headers: Headers) -> Reply:
    return _tensor_body(frame, options, headers.get("accept", ""))


class _Answer:
    """How one request's frame becomes its reply (at once, or in the read's callback)."""

    def __init__(self, timer: RequestTimer, headers: Headers, encode: _Encode, extra: Any) -> None:
        self.timer = timer
        self.headers = headers
        self.encode = encode
        self.extra = extra

    def reply(self, frame: FeatureFrame) -> Reply:
        try:
            reply = self.encode(frame, self.extra, self.headers)
        except Exception as exc:
            return _error_reply(exc, self.timer, self.headers)
        self.timer.done("200")
        return reply

    def error(self, exc: Exception) -> Reply:
        return _error_reply(exc, self.timer, self.headers)


class RestHandlers:
    """The POST endpoints as plain functions of (body, headers) -> Reply, shared by the
    FastAPI routes (documented) and serving_api.http_server (served). A reply comes
    back at once when the read needed no I/O (near cache), else as an awaitable."""

    def __init__(self, core: ServingCore) -> None:
        self.core = core

    def online(self, body: bytes, headers: Headers) -> Result:
        return self._read("/get-online-features", body, headers, _no_options, _encode_online)

    def tensor(self, body: bytes, headers: Headers) -> Result:
        return self._read("/get-online-tensor", body, headers, _tensor_options, _encode_tensor)

    def _read(self, endpoint: str, body: bytes, headers: Headers, options: _Options,
              encode: _Encode) -> Result:  # fmt: skip
        timer = RequestTimer(endpoint)
        try:
            scope = self.core.authenticate(headers.get("authorization"))
            query, data = parse_query(body)
            extra = options(data)
            timer.n_rows = len(next(iter(query.entities.values()), ()))
            answer = _Answer(timer, headers, encode, extra)
            return self.core.serve(query, answer.reply, answer.error, scope=scope)
        except KeysPending as pending:  # a rotated signing key: served once its key set is in
            return after_keys(pending, lambda: self._read(endpoint, body, headers, options, encode))
        except Exception as exc:  # every failure becomes a status code, never a trace
            return _error_reply(exc, timer, headers)

    def describe(self, body: bytes, headers: Headers) -> Result:
        timer = RequestTimer("/describe-features")
        try:
            scope = self.core.authenticate(headers.get("authorization"))
            query, _ = parse_query(body, need_entities=False)
            layout = self.core.describe(query, scope=scope)
        except Exception as exc:
            return _error_reply(exc, timer, headers)
        timer.done("200")
        return Reply(200, orjson.dumps(layout.to_dict()))

    def routes(self) -> dict[str, Callable[[bytes, Headers], Result]]:
        return {
            "/get-online-features": self.online,
            "/get-online-tensor": self.tensor,
            "/describe-features": self.describe,
        }


async def _request_body(request: Request, core: ServingCore) -> bytes:
    limit = core.limits.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise body_too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise body_too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _response(reply: Reply) -> Response:
    return Response(reply.body, reply.status, reply.headers, media_type=reply.content_type)


async def _route(
    handler: Callable[[bytes, Headers], Result], request: Request, core: ServingCore
) -> Response:
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        body = await _request_body(request, core)
    except Exception as exc:
        return _response(_error_reply(exc, RequestTimer(request.url.path), headers))
    result = handler(body, headers)
    return _response(result if isinstance(result, Reply) else await result)


def _health_routes(app: FastAPI, core: ServingCore) -> None:
    @app.get(
        "/health",
        response_model=None,
        responses={200: {"model": HealthResponse}, 503: {"model": HealthResponse}},
    )
    async def health() -> Response:
        """SERVING when Redis answers a PING within 0.5 s, else 503 NOT_SERVING."""
        if await core.healthy():
            return JSONResponse({"status": "SERVING", "redis": core.redis.address})
        body = {
            "status": "NOT_SERVING",
            "redis": core.redis.address,
            "detail": f"Redis at {core.redis.address} does not answer",
        }
        return JSONResponse(body, status_code=503)

    @app.get(
        "/metrics",
        response_model=None,
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    )
    async def metrics_endpoint() -> Response:
        """Prometheus metrics of every worker process."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)


_TENSOR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "A featureline.serving.v1.Tensor message (application/x-protobuf), "
        f"or an Arrow IPC stream when Accept asks for {ARROW_STREAM}",
        "content": {PROTOBUF: {}, ARROW_STREAM: {}},
    },
    **ERROR_RESPONSES,
}


def create_app(core: ServingCore) -> FastAPI:
    """The documented FastAPI app (OpenAPI at /openapi.json, docs at /docs)."""
    app = FastAPI(
        title="Featureline serving API",
        version="1",
        description=API_DESCRIPTION,
    )
    handlers = RestHandlers(core)

    @app.post(
        "/get-online-features",
        response_model=None,
        responses={200: {"model": OnlineFeaturesResponse}, **ERROR_RESPONSES},
        openapi_extra=request_body(GetOnlineFeaturesRequest),
    )
    async def get_online_features(request: Request) -> Response:
        """Feature values, statuses and event timestamps, in Feast's response shape."""
        return await _route(handlers.online, request, core)

    @app.post(
        "/get-online-tensor",
        responses=_TENSOR_RESPONSES,
        response_model=None,
        response_class=Response,
        openapi_extra=request_body(GetOnlineTensorRequest),
    )
    async def get_online_tensor(request: Request) -> Response:
        """Numeric features as a float32 matrix plus a presence mask, in request order."""
        return await _route(handlers.tensor, request, core)

    @app.post(
        "/describe-features",
        response_model=None,
        responses={200: {"model": LayoutResponse}, **ERROR_RESPONSES},
        openapi_extra=request_body(GetOnlineFeaturesRequest),
    )
    async def describe_features(request: Request) -> Response:
        """The columns a request resolves to (names, types, tensor membership)."""
        return await _route(handlers.describe, request, core)

    _health_routes(app, core)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path, exc_info=exc)
        return JSONResponse({"detail": INTERNAL_MESSAGE}, 500)

    return app
