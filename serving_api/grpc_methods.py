"""The gRPC methods of the serving API on raw bytes, whatever carries them.

Both gRPC transports call these: our own HTTP/2 server (serving_api.grpc_h2, which
serves the public port) and the grpc.aio server (serving_api.grpc_server, which hosts
health and reflection behind it). A method returns the response bytes at once when the
read needed no I/O (the near cache had every reply), else a future of them completed
by the read's callback (ServingCore.serve), so no request costs a task. Failures are
`RpcFailure(code, message)`, already recorded in the metrics; a stack trace never
reaches the caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from featureline.serving_api.auth import KeysPending, after_keys
from featureline.serving_api.codec_proto import (
    encode_online_response,
    parse_describe_request,
    parse_online_request,
    parse_tensor_request,
    tensor_message,
)
from featureline.serving_api.frame import FeatureFrame
from featureline.serving_api.proto import FEAST_GRPC_SERVER_NAME, FEAST_SERVICE_NAME, SERVICE_NAME, pb
from featureline.serving_api.service import FeatureQuery, RequestTimer, ServingCore
from featureline.serving_api.tensor import frame_to_tensor

log = logging.getLogger("featureline.serving.grpc")

Reply = bytes | Awaitable[bytes]


class RpcFailure(Exception):
    """A call's gRPC status code name (grpc.StatusCode's) and message for the caller."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CallInfo:
    """What a method needs of its call besides the request: the bearer token and the
    caller's deadline (time.monotonic(); None: none set)."""

    authorization: str | None = None
    deadline: float | None = None

    def time_remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


Method = Callable[[bytes, CallInfo], Reply]
# Parses a request into the query and what the encoder needs besides the frame.
_Parse = Callable[[bytes], tuple[FeatureQuery, Any]]
_Encode = Callable[[FeatureFrame, Any], bytes]


def _failure(exc: Exception, timer: RequestTimer) -> RpcFailure:
    http, code, message = timer.failed(exc)
    if http == 500:
        log.exception("error serving %s", timer.endpoint, exc_info=exc)
    return RpcFailure(code, message)


def _parse_online(request: bytes) -> tuple[FeatureQuery, Any]:
    refs, service, entities, full = parse_online_request(request)
    return FeatureQuery(refs, service, entities, full), None


def _parse_tensor(request: bytes) -> tuple[FeatureQuery, Any]:
    refs, service, entities, full, fill = parse_tensor_request(request)
    return FeatureQuery(refs, service, entities, full), (fill, refs is not None)


def _encode_online(frame: FeatureFrame, _: Any) -> bytes:
    return encode_online_response(frame)


def _encode_tensor(frame: FeatureFrame, options: tuple[float, bool]) -> bytes:
    fill, by_refs = options
    return tensor_message(frame_to_tensor(frame, fill, by_refs), frame.t_us)


class _Answer:
    """How one call's frame becomes its response (at once, or in the read's callback)."""

    def __init__(self, timer: RequestTimer, encode: _Encode, extra: Any) -> None:
        self.timer = timer
        self.encode = encode
        self.extra = extra

    def reply(self, frame: FeatureFrame) -> bytes:
        try:
            response = self.encode(frame, self.extra)
        except Exception as exc:
            raise _failure(exc, self.timer) from None
        self.timer.done("OK")
        return response

    def error(self, exc: Exception) -> bytes:
        raise _failure(exc, self.timer)


class FeatureMethods:
    """featureline.serving.v1.FeatureServing, and Feast's GetOnlineFeatures under both
    of Feast's service names (the same wire format)."""

    def __init__(self, core: ServingCore) -> None:
        self.core = core

    def get_online(self, request: bytes, call: CallInfo) -> Reply:
        return self._read("grpc/GetOnlineFeatures", request, call, _parse_online, _encode_online)

    def get_tensor(self, request: bytes, call: CallInfo) -> Reply:
        return self._read("grpc/GetOnlineTensor", request, call, _parse_tensor, _encode_tensor)

    def describe(self, request: bytes, call: CallInfo) -> Reply:
        timer = RequestTimer("grpc/DescribeFeatures")
        try:
            scope = self.core.authenticate(call.authorization)
            refs, service, full = parse_describe_request(request)
            layout = self.core.describe(FeatureQuery(refs, service, {}, full), scope=scope)
            response = pb.FeatureLayout(
                join_keys=layout.join_keys,
                request_fields=layout.request_fields,
                columns=[pb.FeatureColumn(**c.to_dict()) for c in layout.columns],
            ).SerializeToString()
        except Exception as exc:
            raise _failure(exc, timer) from None
        timer.done("OK")
        return bytes(response)

    def _read(self, endpoint: str, request: bytes, call: CallInfo, parse: _Parse, encode: _Encode) -> Reply:
        timer = RequestTimer(endpoint)
        try:
            scope = self.core.authenticate(call.authorization)
            query, extra = parse(request)
            timer.n_rows = len(next(iter(query.entities.values()), ()))
            answer = _Answer(timer, encode, extra)
            return self.core.serve(query, answer.reply, answer.error, scope=scope,
                                   time_remaining_s=call.time_remaining())  # fmt: skip
        except KeysPending as pending:  # a rotated signing key: served once its key set is in
            return after_keys(pending, lambda: self._read(endpoint, request, call, parse, encode))
        except RpcFailure:  # the encoder's, already recorded
            raise
        except Exception as exc:
            raise _failure(exc, timer) from None

    def by_path(self) -> dict[str, Method]:
        """Full method paths ("/package.Service/Method") -> method."""
        ours: dict[str, Method] = {"GetOnlineFeatures": self.get_online, "GetOnlineTensor": self.get_tensor,
                "DescribeFeatures": self.describe}  # fmt: skip
        paths = {f"/{SERVICE_NAME}/{name}": method for name, method in ours.items()}
        for feast in (FEAST_SERVICE_NAME, FEAST_GRPC_SERVER_NAME):
            paths[f"/{feast}/GetOnlineFeatures"] = self.get_online
        return paths
