"""OIDC/JWT bearer tokens against a served `featureline serve` (on with --auth-jwks): a JWKS
made here, served over HTTP (native gRPC stack, with a tokens file too) or as a file
(grpcio stack, groups claim); 401 + WWW-Authenticate saying why, 403 naming what is not
granted, the same as gRPC status codes, a key rotation served without a failed request,
and a bad JWKS that stops `featureline serve` at start in one line."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from jwt_keys import AUDIENCE, CLAIM_MAP, ISSUER, ec_key, jwks, jwks_server, rsa_key, unsigned
from serve_process import ServerProcess, serve_until_exit, start_server

from featureline.errors import BadInputError
from featureline.serving_api.client import FeatureClient
from featureline.settings import Settings
from featureline.specs import RepoSpec

RSA, EC, STRANGER = rsa_key("rsa-1"), ec_key("ec-1"), rsa_key("rsa-1")  # STRANGER: not in the set
MIN_REFRESH_S = 2.0
BY_SERVICE = {"feature_service": "svc", "entities": {"user_id": [1], "merchant_id": ["m"], "amount": [1.0]}}
BY_REFS = {"features": ["profile:age"], "entities": {"user_id": [1]}}
SERVICE_ENTITIES = {"user_id": [1], "merchant_id": ["m"], "amount": [1.0]}


def _flags(home: Path, jwks_source: str, *extra: str) -> tuple[str, ...]:
    claims = home / "jwt-claims.txt"
    claims.write_text(CLAIM_MAP)
    return ("--auth-jwks", jwks_source, "--auth-issuer", ISSUER, "--auth-audience", f"other,{AUDIENCE}",
            "--auth-claim-map", str(claims), "--auth-leeway-s", "5",
            "--auth-jwks-min-refresh-s", str(MIN_REFRESH_S), *extra)  # fmt: skip


@pytest.fixture(scope="module")
def idp() -> Iterator[tuple[str, dict[str, Any], list[float]]]:
    with jwks_server(jwks(RSA, EC)) as served:
        yield served


@pytest.fixture(scope="module")
def native(
    serving_settings: Settings, serving_spec: RepoSpec, idp: tuple[str, Any, Any]
) -> Iterator[ServerProcess]:
    """Native gRPC stack, JWKS by URL, a static tokens file besides."""
    tokens = serving_settings.home / "jwt-static-tokens.txt"
    tokens.write_text("tok-svc svc\n")
    server = start_server(
        serving_settings, *_flags(serving_settings.home, idp[0], "--auth-tokens", str(tokens))
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def aio(serving_settings: Settings, serving_spec: RepoSpec) -> Iterator[tuple[ServerProcess, Path, float]]:
    """grpcio's gRPC stack, JWKS from a file, access from the groups claim."""
    jwks_file = serving_settings.home / "jwks.json"
    jwks_file.write_text(json.dumps(jwks(RSA, EC)))
    flags = _flags(serving_settings.home, str(jwks_file), "--auth-claim", "groups", "--grpc-server", "aio")
    server = start_server(serving_settings, *flags)
    try:
        yield server, jwks_file, time.monotonic()  # its worker read the file before it answered
    finally:
        server.stop()


def _post(server: ServerProcess, body: dict[str, Any], token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{server.url}/get-online-features", json=body, headers=headers, timeout=10)


GONE, EVERYTHING = rsa_key("gone"), {"scope": "features:all"}
# Made when the test runs (a token made at collection could expire before a long suite gets here).
REFUSED: list[tuple[Callable[[], str], str]] = [
    (lambda: RSA.token(**EVERYTHING, exp=int(time.time()) - 60), "the token has expired"),
    (lambda: RSA.token(**EVERYTHING, nbf=int(time.time()) + 600), "the token is not valid yet (nbf"),
    (lambda: RSA.token(**EVERYTHING, aud="another-api"), f"the token's audience is not other or {AUDIENCE}"),
    (lambda: RSA.token(**EVERYTHING, iss="https://evil.test/"), f"the token's issuer is not {ISSUER}"),
    (lambda: STRANGER.token(**EVERYTHING), "the token's signature does not verify"),
    (lambda: unsigned(**EVERYTHING), "the token's algorithm none is not allowed ("),
    (lambda: GONE.token(), "unknown signing key gone"),  # fetched again: still unknown
    (lambda: "not.a.jwt", "malformed token ("),
    (lambda: "tok-unknown", "invalid bearer token"),
]  # fmt: skip


@pytest.mark.parametrize(("token", "reason"), REFUSED, ids=[r[1][:24] for r in REFUSED])
def test_rest_refuses_with_the_reason(native: ServerProcess, token: Callable[[], str], reason: str) -> None:
    response = _post(native, BY_REFS, token())
    assert response.status_code == 401, response.text
    assert response.json()["detail"].startswith(reason)
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(
        f'Bearer realm="featureline", error="invalid_token", error_description="{reason}'
    ), challenge


def test_rest_grants_by_scope_and_names_what_is_not_granted(native: ServerProcess) -> None:
    assert _post(native, BY_REFS, RSA.token(scope="openid features:all")).status_code == 200
    svc = EC.token(scp=["features:svc"])
    assert _post(native, BY_SERVICE, svc).status_code == 200
    denied = _post(native, BY_REFS, svc)
    assert denied.status_code == 403 and denied.json()["detail"] == "this token may not read view(s) profile"
    nothing = _post(native, BY_SERVICE, RSA.token(scope="openid"))
    assert nothing.status_code == 403
    assert nothing.json()["detail"] == "this token may not read feature service 'svc'"
    assert _post(native, BY_SERVICE, "tok-svc").status_code == 200  # the tokens file, alongside
    assert _post(native, BY_REFS, "tok-svc").status_code == 403
    anonymous = _post(native, BY_REFS, None)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="featureline"'


@pytest.mark.parametrize("grpc_server", ["native", "aio"])
def test_grpc_answers_the_same(grpc_server: str, request: pytest.FixtureRequest) -> None:
    native = grpc_server == "native"
    server: ServerProcess = request.getfixturevalue("native") if native else request.getfixturevalue("aio")[0]
    claim = {"scope": "features:svc"} if native else {"groups": ["features:svc", "x"]}
    with FeatureClient(server.target, token=EC.token(**claim)) as client:
        rows = client.get_online_features(SERVICE_ENTITIES, feature_service="svc")
        assert "user_id" in rows.feature_names
        with pytest.raises(BadInputError, match=r"this token may not read view\(s\) profile"):
            client.get_online_features({"user_id": [1]}, features=["profile:age"])
    with grpc.insecure_channel(server.target) as channel:
        call = channel.unary_unary("/featureline.serving.v1.FeatureServing/GetOnlineFeatures")
        expired = RSA.token(exp=int(time.time()) - 60, **claim)
        with pytest.raises(grpc.RpcError) as info:
            call(b"\x0a\x03svc", timeout=5, metadata=(("authorization", f"Bearer {expired}"),))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert info.value.details() == "the token has expired"
        with pytest.raises(grpc.RpcError) as info:
            call(b"\x0a\x03svc", timeout=5, metadata=(("authorization", f"Bearer {RSA.token()}"),))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert info.value.details() == "this token may not read feature service 'svc'"


def test_groups_claim_mapping(aio: tuple[ServerProcess, Path, float]) -> None:
    server, _, _ = aio
    team = RSA.token(groups=["team-profile"], scope="features:all")  # only groups counts here
    assert _post(server, BY_REFS, team).status_code == 200
    denied = _post(server, BY_SERVICE, team)
    assert denied.status_code == 403 and "'svc'" in denied.json()["detail"]


def _after_min_refresh(last_fetch: float) -> None:
    time.sleep(max(0.0, last_fetch + MIN_REFRESH_S + 0.1 - time.monotonic()))


def test_a_rotated_key_is_fetched_once_and_served_at_the_first_try(
    native: ServerProcess, idp: tuple[str, dict[str, Any], list[float]]
) -> None:
    _, document, fetches = idp
    rotated, made_up = ec_key("ec-2"), ec_key("made-up").token(scope="features:all")
    _after_min_refresh(max(fetches, default=0.0))
    document["keys"] = [RSA.jwk(), rotated.jwk()]  # the IdP rotates: ec-1 out, ec-2 in
    before = len(fetches)
    assert _post(native, BY_REFS, rotated.token(scope="features:all")).status_code == 200
    assert len(fetches) == before + 1
    response = _post(native, BY_REFS, made_up)  # unknown too, but the set was just fetched
    assert response.status_code == 401 and response.json()["detail"] == "unknown signing key made-up"
    assert len(fetches) == before + 1
    assert _post(native, BY_REFS, EC.token(scope="features:all")).status_code == 401  # withdrawn


def test_a_rotated_key_in_the_file_over_grpc(aio: tuple[ServerProcess, Path, float]) -> None:
    server, jwks_file, started = aio
    rotated = rsa_key("rsa-2")
    _after_min_refresh(started)
    jwks_file.write_text(json.dumps(jwks(RSA, EC, rotated)))
    with FeatureClient(server.target, token=rotated.token(groups=["features:svc"])) as client:
        assert "user_id" in client.get_online_features(SERVICE_ENTITIES, feature_service="svc").feature_names


def test_a_bad_jwks_stops_serve_in_one_line(serving_settings: Settings, serving_spec: RepoSpec) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once closed
    missing = str(serving_settings.home / "no-such-jwks.json")
    for source, reason in [
        (missing, "No such file"),
        (f"http://127.0.0.1:{port}/jwks", "Connection refused"),
    ]:
        done = serve_until_exit(serving_settings, *_flags(serving_settings.home, source))
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and f"cannot use the JWKS {source}" in lines[0] and reason in lines[0], lines
