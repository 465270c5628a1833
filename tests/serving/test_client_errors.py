"""The SDK maps gRPC errors of the sync and the asyncio stack alike."""

from __future__ import annotations

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from featureline.errors import BadInputError, NotFoundError, ServiceUnavailableError
from featureline.serving_api.client import _retryable, translate_error


def _aio(code: grpc.StatusCode, details: str) -> AioRpcError:
    return AioRpcError(code, Metadata(), Metadata(), details=details)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.INVALID_ARGUMENT, BadInputError),
        (grpc.StatusCode.PERMISSION_DENIED, BadInputError),
        (grpc.StatusCode.UNAVAILABLE, ServiceUnavailableError),
    ],
)
def test_asyncio_errors_are_translated_by_code(code: grpc.StatusCode, expected: type) -> None:
    error = translate_error(_aio(code, "the server's words"), "127.0.0.1:1")
    assert type(error) is expected
    assert "the server's words" in str(error)


def test_only_unavailable_is_retried() -> None:
    assert _retryable(_aio(grpc.StatusCode.UNAVAILABLE, "down"))
    assert not _retryable(_aio(grpc.StatusCode.NOT_FOUND, "nope"))
