"""The REST API (FastAPI): Feast's `POST /get-online-features`, a tensor call, health,
metrics and OpenAPI docs.

`POST /get-online-features` accepts and answers exactly like Feast 0.67's feature
server, so a Feast REST client only changes its URL. Differences are corrections of
Feast's defects (shared/anchors.md): an entity not in the store is NOT_FOUND (Feast:
PRESENT with a null), a value past its view's ttl is OUTSIDE_MAX_AGE (Feast: PRESENT),
a stored null is NULL_VALUE, and columns come in request order (Feast's order varies).
Errors are `{"detail": message}` with 400/401/403/404/413/429/503/504; a stack trace
never leaves the server.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from featureline.errors import BadInputError
from serving_api import metrics
from serving_api.codec_json import frame_to_feast_json
from serving_api.limits import UnauthenticatedError, body_too_large
from serving_api.proto import pb
from serving_api.rest_models import (
    ERROR_RESPONSES,
    GetOnlineFeaturesRequest,
    GetOnlineTensorRequest,
    HealthResponse,
    LayoutResponse,
    OnlineFeaturesResponse,
    request_body,
)
from serving_api.service import FeatureQuery, RequestTimer, ServingCore
from serving_api.tensor import frame_to_tensor

log = logging.getLogger("featureline.serving.rest")
ARROW_STREAM = "application/vnd.apache.arrow.stream"
PROTOBUF = "application/x-protobuf"


class _OrjsonResponse(Response):
    media_type = "application/json"


async def _read_body(request: Request, core: ServingCore) -> bytes:
    limit = core.limits.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise body_too_large(int(declared), core.limits)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise body_too_large(size, core.limits)
        chunks.append(chunk)
    return b"".join(chunks)


def _field(data: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BadInputError(f"field {name!r} must be a {kind.__name__}")
    return value


def parse_query(body: bytes) -> tuple[FeatureQuery, dict[str, Any]]:
    """Feast's request JSON -> FeatureQuery (BadInputError naming the bad field)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadInputError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadInputError("the request body must be a JSON object")
    entities = data.get("entities")
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


def _fill_value(data: dict[str, Any]) -> float:
    fill = data.get("fill_value", 0.0)
    if fill is None:
        return 0.0
    if type(fill) not in (int, float):
        raise BadInputError("field 'fill_value' must be a number")
    return float(fill)


def _error(exc: BaseException, timer: RequestTimer, request: Request) -> JSONResponse:
    http, _, message = timer.failed(exc)
    if http == 500:
        log.exception("error serving %s", request.url.path, exc_info=exc)
    headers = {}
    if isinstance(exc, UnauthenticatedError):
        given = bool(request.headers.get("authorization"))
        headers["WWW-Authenticate"] = 'Bearer realm="featureline"' + (
            ', error="invalid_token"' if given else ""
        )
    if http == 429:
        headers["Retry-After"] = "1"
    return JSONResponse({"detail": message}, status_code=http, headers=headers)


def _tensor_response(frame: Any, fill: float, accept: str) -> Response:
    parts = frame_to_tensor(frame, fill)
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
        return Response(sink.getvalue().to_pybytes(), media_type=ARROW_STREAM)
    message = pb.Tensor(
        rows=parts.values.shape[0],
        cols=parts.values.shape[1],
        column_names=parts.column_names,
        values=parts.values.tobytes(),
        present=parts.present.tobytes(),
        omitted_features=parts.omitted,
        served_at_us=frame.t_us,
    )
    return Response(message.SerializeToString(), media_type=PROTOBUF)


def _health_routes(app: FastAPI, core: ServingCore) -> None:
    @app.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
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

    @app.get("/metrics", response_class=Response)
    async def metrics_endpoint() -> Response:
        """Prometheus metrics of every worker process."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)


def create_app(core: ServingCore) -> FastAPI:
    app = FastAPI(
        title="Featureline serving API",
        version="1",
        description=__doc__,
        default_response_class=_OrjsonResponse,
    )

    @app.post(
        "/get-online-features",
        response_model=OnlineFeaturesResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=request_body(GetOnlineFeaturesRequest),
    )
    async def get_online_features(request: Request) -> Response:
        """Feature values, statuses and event timestamps, in Feast's response shape."""
        timer = RequestTimer("/get-online-features")
        try:
            query, _ = parse_query(await _read_body(request, core))
            timer.n_rows = len(next(iter(query.entities.values()), ()))
            frame = await core.get_online(query, authorization=request.headers.get("authorization"))
            body = frame_to_feast_json(frame)
        except Exception as exc:  # every failure becomes a status code, never a trace
            return _error(exc, timer, request)
        timer.done("200")
        return _OrjsonResponse(body)

    @app.post(
        "/get-online-tensor",
        responses={
            200: {
                "description": "A featureline.serving.v1.Tensor message (application/x-protobuf)"
                ", or an Arrow IPC stream when Accept asks for " + ARROW_STREAM,
                "content": {PROTOBUF: {}, ARROW_STREAM: {}},
            },
            **ERROR_RESPONSES,
        },
        response_class=Response,
        openapi_extra=request_body(GetOnlineTensorRequest),
    )
    async def get_online_tensor(request: Request) -> Response:
        """Numeric features as a float32 matrix plus a presence mask, in request order."""
        timer = RequestTimer("/get-online-tensor")
        try:
            query, data = parse_query(await _read_body(request, core))
            fill = _fill_value(data)
            timer.n_rows = len(next(iter(query.entities.values()), ()))
            frame = await core.get_online(query, authorization=request.headers.get("authorization"))
            response = _tensor_response(frame, fill, request.headers.get("accept", ""))
        except Exception as exc:
            return _error(exc, timer, request)
        timer.done("200")
        return response

    @app.post(
        "/describe-features",
        response_model=LayoutResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=request_body(GetOnlineFeaturesRequest),
    )
    async def describe_features(request: Request) -> Response:
        """The columns a request resolves to (names, types, tensor membership)."""
        timer = RequestTimer("/describe-features")
        try:
            body = await _read_body(request, core)
            query, _ = parse_query(body if body.strip() else b'{"entities": {}}')
            layout = core.describe(query, authorization=request.headers.get("authorization"))
        except Exception as exc:
            return _error(exc, timer, request)
        timer.done("200")
        return _OrjsonResponse(orjson.dumps(layout))

    _health_routes(app, core)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal server error (see the server log)"}, 500)

    return app
