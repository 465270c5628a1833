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
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from featureline.errors import ServiceUnavailableError
from featureline.serving_api.grpc_methods import CallInfo, FeatureMethods, Method, RpcFailure
from featureline.serving_api.limits import Limits
from featureline.serving_api.proto import FEAST_SERVICE_NAME, SERVICE_NAME
from featureline.serving_api.service import ServingCore
from featureline.serving_api.tls import ServerTls

log = logging.getLogger("featureline.serving.grpc")
Handler = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]
# How often Watch re-checks Redis for a status change.
_WATCH_INTERVAL_S = 1.0


def _authorization(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return str(value)
    return None


def _aio_handler(method: Method) -> Handler:
    """A FeatureMethods method as a grpc.aio handler."""

    async def handler(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        try:
            reply = method(request, CallInfo(_authorization(context), deadline))
            return reply if isinstance(reply, bytes) else await reply
        except RpcFailure as failure:
            await context.abort(getattr(grpc.StatusCode, failure.code), failure.message)
            raise  # unreachable: abort raises

    return handler


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


def aio_limit_options(limits: Limits) -> list[tuple[str, int]]:
    """The HTTP/2 limits (Limits.grpc_*) that grpcio has a channel argument for. grpcio
    has none for CONTINUATION frames, stream resets, SETTINGS frames, buffered or
    pending bytes or stalls (tests/serving/test_hostile_grpc.py records where that
    shows); PINGs keep grpcio's own policy (one per 5 min without data, 2 strikes),
    stricter than ours."""
    return [
        ("grpc.max_concurrent_streams", limits.grpc_max_streams),
        # Soft and hard metadata limits: past the soft one grpcio starts refusing calls.
        ("grpc.max_metadata_size", limits.grpc_max_header_bytes),
        ("grpc.absolute_max_metadata_size", limits.grpc_max_header_bytes),
        ("grpc.max_connection_idle_ms", int(limits.grpc_idle_timeout_s * 1000)),
        ("grpc.server_handshake_timeout_ms", int(limits.grpc_preface_timeout_s * 1000)),
        ("grpc.max_allowed_incoming_connections", limits.grpc_max_connections),
    ]


def create_grpc_server(
    core: ServingCore,
    port: int,
    *,
    host: str = "0.0.0.0",
    reuse_port: bool = True,
    extra: dict[str, Method] | None = None,
    tls: ServerTls | None = None,
) -> tuple[grpc.aio.Server, int]:
    """A started-later aio server bound to host:port; returns it and the bound port.
    `extra`: more methods by full path (Feast's gRPC writes); `tls`: serve TLS (ALPN h2,
    client certificates when it has a client CA)."""
    limits = core.limits
    options = [
        ("grpc.max_receive_message_length", limits.grpc_max_receive_bytes),
        ("grpc.max_send_message_length", limits.grpc_max_send_bytes),
        # Several worker processes share the port; the kernel spreads connections.
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        *aio_limit_options(limits),
    ]
    if tls is not None:  # the TLS + HTTP/2 handshake, as our ports' --tls-handshake-timeout-s
        options.append(("grpc.server_handshake_timeout_ms", int(limits.tls_handshake_timeout_s * 1000)))
    server = grpc.aio.server(options=options)
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for path, method in {**FeatureMethods(core).by_path(), **(extra or {})}.items():
        service, name = path[1:].split("/")
        by_service.setdefault(service, {})[name] = grpc.unary_unary_rpc_method_handler(_aio_handler(method))
    server.add_generic_rpc_handlers(
        tuple(grpc.method_handlers_generic_handler(s, m) for s, m in by_service.items())
    )
    health_pb2_grpc.add_HealthServicer_to_server(RedisHealth(core), server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    try:
        if tls is not None:
            bound = server.add_secure_port(f"{host}:{port}", tls.grpc_credentials())
        else:
            bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise ServiceUnavailableError(f"cannot bind the gRPC port {host}:{port} (in use?)")
    return server, bound
