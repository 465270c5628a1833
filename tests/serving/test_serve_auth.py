"""Bearer-token auth (on with --auth-tokens): 401 + WWW-Authenticate without a valid
token, 403 for a token without access, and the same as gRPC status codes."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest
from serve_process import ServerProcess, start_server

from featureline.errors import BadInputError
from featureline.serving_api.client import FeatureClient
from featureline.settings import Settings
from featureline.specs import RepoSpec

TOKENS = """# token      access
tok-all       *
tok-svc       svc          # one feature service
tok-profile   profile,pair # two views
"""


@pytest.fixture(scope="module")
def secured(serving_settings: Settings, serving_spec: RepoSpec) -> Iterator[ServerProcess]:
    tokens = serving_settings.home / "tokens.txt"
    tokens.write_text(TOKENS)
    server = start_server(serving_settings, "--auth-tokens", str(tokens))
    try:
        yield server
    finally:
        server.stop()


def _post(server: ServerProcess, body: dict, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{server.url}/get-online-features", json=body, headers=headers, timeout=5)


BY_SERVICE = {"feature_service": "svc", "entities": {"user_id": [1], "merchant_id": ["m"],
                                                     "amount": [1.0]}}  # fmt: skip
BY_REFS = {"features": ["profile:age"], "entities": {"user_id": [1]}}
ODFV = {"features": ["ratio:amount_over_limit"], "entities": {"user_id": [1], "amount": [1.0]}}


@pytest.mark.parametrize(
    ("body", "token", "status"),
    [
        (BY_REFS, None, 401),
        (BY_REFS, "wrong", 401),
        (BY_REFS, "tok-all", 200),
        (BY_SERVICE, "tok-all", 200),
        (BY_SERVICE, "tok-svc", 200),
        (BY_REFS, "tok-svc", 403),
        (BY_REFS, "tok-profile", 200),
        (BY_SERVICE, "tok-profile", 403),
        (ODFV, "tok-profile", 403),  # the on-demand view itself is not granted
    ],
)
def test_rest_auth(secured: ServerProcess, body: dict, token: str | None, status: int) -> None:
    response = _post(secured, body, token)
    assert response.status_code == status, response.text
    if status == 401:
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="featureline"')
        assert ('error="invalid_token"' in challenge) == (token is not None)
        if token is not None:  # RFC 6750: the reason, as the body's detail says it
            assert challenge.endswith(f'error_description="{response.json()["detail"]}"'), challenge
    if status == 403:
        assert "may not read" in response.json()["detail"]


def test_unknown_features_are_not_revealed_before_auth(secured: ServerProcess) -> None:
    body = {"features": ["secret:thing"], "entities": {"user_id": [1]}}
    assert _post(secured, body, None).status_code == 401
    assert _post(secured, body, "tok-all").status_code == 404
    assert httpx.get(f"{secured.url}/health", timeout=5).status_code == 200  # no token needed


def test_grpc_auth(secured: ServerProcess) -> None:
    with FeatureClient(secured.target) as anonymous, pytest.raises(BadInputError, match="token"):
        anonymous.get_online_features({"user_id": [1]}, features=["profile:age"])
    with FeatureClient(secured.target, token="tok-svc") as client:
        with pytest.raises(BadInputError, match="may not read"):
            client.get_online_features({"user_id": [1]}, features=["profile:age"])
        rows = client.get_online_features(
            {"user_id": [1], "merchant_id": ["m"], "amount": [1.0]}, feature_service="svc"
        )
        assert set(rows.feature_names[:2]) == {"user_id", "merchant_id"}  # a protobuf map
    with grpc.insecure_channel(secured.target) as channel:
        call = channel.unary_unary("/featureline.serving.v1.FeatureServing/GetOnlineFeatures")
        with pytest.raises(grpc.RpcError) as info:
            call(b"", timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as info:
            call(b"\x0a\x03svc", timeout=5, metadata=(("authorization", "Bearer tok-profile"),))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
