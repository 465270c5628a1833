"""The gRPC server (grpc.aio): featureline.serving.v1.FeatureServing, Feast's
ServingService/GetOnlineFeatures (same wire format), health and reflection.

Handlers take and return raw bytes (no request/response serializer): requests are
parsed by the generated classes, responses are encoded by hand (codec_proto). Status
codes: INVALID_ARGUMENT (bad input), NOT_FOUND (unknown feature or service),
UNAUTHENTICATED / PERMISSION_DENIED (tokens), RESOURCE_EXHAUSTED (message larger than
the limit, or too many requests in flight), UNAVAILABLE (Redis down), DEADLINE_EXCEEDED
(the caller's deadline passes first). The health service PINGs Redis on every Check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from featureline.errors import ServiceUnavailableError
from serving_api.codec_proto import (
    encode_online_response,
    parse_describe_request,
    parse_online_request,
    parse_tensor_request,
    tensor_message,
)
from serving_api.frame import FeatureFrame
from serving_api.proto import FEAST_GRPC_SERVER_NAME, FEAST_SERVICE_NAME, SERVICE_NAME, pb
from serving_api.service import FeatureQuery, RequestTimer, ServingCore
from serving_api.tensor import frame_to_tensor

log = logging.getLogger("featureline.serving.grpc")
Handler = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]
# How often Watch re-checks Redis for a status change.
_WATCH_INTERVAL_S = 1.0


def _authorization(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return str(value)
    return None


async def _abort(context: grpc.aio.ServicerContext, exc: Exception, timer: RequestTimer) -> None:
    http, code_name, message = timer.failed(exc)
    if http == 500:
        log.exception("error serving %s", timer.endpoint, exc_info=exc)
    await context.abort(getattr(grpc.StatusCode, code_name), message)


class FeatureServicer:
    """The three methods of featureline.serving.v1.FeatureServing, on raw bytes."""

    def __init__(self, core: ServingCore) -> None:
        self.core = core

    async def _read(self, query: FeatureQuery, context: grpc.aio.ServicerContext, scope: Any) -> FeatureFrame:
        return await self.core.get_online(query, scope=scope, time_remaining_s=context.time_remaining())

    async def get_online(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        timer = RequestTimer("grpc/GetOnlineFeatures")
        try:
            scope = self.core.authenticate(_authorization(context))
            refs, service, entities, full = parse_online_request(request)
            timer.n_rows = len(next(iter(entities.values()), ()))
            frame = await self._read(FeatureQuery(refs, service, entities, full), context, scope)
            response = encode_online_response(frame)
        except Exception as exc:
            await _abort(context, exc, timer)
            raise  # unreachable: abort raises
        timer.done("OK")
        return response

    async def get_tensor(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        timer = RequestTimer("grpc/GetOnlineTensor")
        try:
            scope = self.core.authenticate(_authorization(context))
            refs, service, entities, full, fill = parse_tensor_request(request)
            timer.n_rows = len(next(iter(entities.values()), ()))
            frame = await self._read(FeatureQuery(refs, service, entities, full), context, scope)
            response = tensor_message(frame_to_tensor(frame, fill), frame.t_us)
        except Exception as exc:
            await _abort(context, exc, timer)
            raise
        timer.done("OK")
        return response

    async def describe(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        timer = RequestTimer("grpc/DescribeFeatures")
        try:
            scope = self.core.authenticate(_authorization(context))
            refs, service, full = parse_describe_request(request)
            layout = self.core.describe(FeatureQuery(refs, service, {}, full), scope=scope)
            response = pb.FeatureLayout(
                join_keys=layout.join_keys,
                request_fields=layout.request_fields,
                columns=[pb.FeatureColumn(**vars(c)) for c in layout.columns],
            ).SerializeToString()
        except Exception as exc:
            await _abort(context, exc, timer)
            raise
        timer.done("OK")
        return bytes(response)

    def handlers(self) -> dict[str, Handler]:
        return {
            "GetOnlineFeatures": self.get_online,
            "GetOnlineTensor": self.get_tensor,
            "DescribeFeatures": self.describe,
        }


class RedisHealth(health_pb2_grpc.HealthServicer):
    """grpc.health.v1 whose status is a real PING of Redis ("" and our services)."""

    SERVICES = ("", SERVICE_NAME, FEAST_SERVICE_NAME)

    def __init__(self, core: ServingCore) -> None:
        self.core = core

    async def _status(self) -> Any:
        ok = await self.core.healthy()
        serving = health_pb2.HealthCheckResponse
        return serving.SERVING if ok else serving.NOT_SERVING

    async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        if request.service not in self.SERVICES:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=await self._status())

    async def Watch(self, request: Any, context: grpc.aio.ServicerContext) -> None:  # noqa: N802
        if request.service not in self.SERVICES:
            await context.write(
                health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            )
            return
        last = None
        while True:
            status = await self._status()
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            await asyncio.sleep(_WATCH_INTERVAL_S)


def create_grpc_server(
    core: ServingCore, port: int, *, host: str = "0.0.0.0", reuse_port: bool = True
) -> tuple[grpc.aio.Server, int]:
    """A started-later aio server bound to host:port; returns it and the bound port."""
    limits = core.limits
    options = [
        ("grpc.max_receive_message_length", limits.grpc_max_receive_bytes),
        ("grpc.max_send_message_length", limits.grpc_max_send_bytes),
        # Several worker processes share the port; the kernel spreads connections.
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    server = grpc.aio.server(options=options)
    handlers = FeatureServicer(core).handlers()
    methods = {name: grpc.unary_unary_rpc_method_handler(handler) for name, handler in handlers.items()}
    feast_methods = {"GetOnlineFeatures": methods["GetOnlineFeatures"]}
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(SERVICE_NAME, methods),
            grpc.method_handlers_generic_handler(FEAST_SERVICE_NAME, feast_methods),
            grpc.method_handlers_generic_handler(FEAST_GRPC_SERVER_NAME, feast_methods),
        )
    )
    health_pb2_grpc.add_HealthServicer_to_server(RedisHealth(core), server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise ServiceUnavailableError(f"cannot bind the gRPC port {host}:{port} (in use?)")
    return server, bound
