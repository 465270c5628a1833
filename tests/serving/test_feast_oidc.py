"""feature_store.yaml's Feast `auth: {type: oidc}` block, honoured by `featureline serve`
with no auth flag: the discovery document and JWKS of an IdP made here (served over
HTTP), roles where Feast reads them, access from the repo's Feast Permissions; the same
tokens judged by Feast's own OidcTokenParser and enforce_policy; an IdP that cannot be
read, a document without jwks_uri and `type: kubernetes` stop serve in one line; flags
override the yaml."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jwt_keys import DISCOVERY_PATH, ec_key, jwks, jwks_server, rsa_key
from serve_process import ServerProcess, serve_until_exit, start_server
from serving_data import SERVING_REPO_FILES

from featureline.errors import BadInputError
from featureline.serving_api.feast_auth import FeastOidc
from featureline.serving_api.serve_flags import configure_jwt, jwt_settings
from featureline.settings import Settings
from featureline.specs import PermissionSpec

CLIENT = "feast-client"
RSA, EC = rsa_key("kc-rsa"), ec_key("kc-ec")
# Keycloak's discovery document, as much of it as Feast reads (its parser needs both
# endpoints besides jwks_uri).
DISCOVERY = {"issuer": "http://127.0.0.1/realms/test", "authorization_endpoint": "http://127.0.0.1/auth",
             "token_endpoint": "http://127.0.0.1/token"}  # fmt: skip
PERMISSIONS = """
from feast import FeatureService, FeatureView
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.permissions.action import AuthzedAction
from feast.permissions.permission import Permission
from feast.permissions.policy import RoleBasedPolicy

svc_readers = Permission(name="svc-readers", types=[FeatureService], name_patterns=["sv.*"],
                         policy=RoleBasedPolicy(roles=["svc-reader"]), actions=[AuthzedAction.READ_ONLINE])
view_readers = Permission(name="view-readers", types=[FeatureView, OnDemandFeatureView],
                          name_patterns=["prof.*", "ratio"], policy=RoleBasedPolicy(roles=["analyst"]),
                          actions=AuthzedAction.READ_ONLINE)
writers = Permission(name="writers", types=[FeatureView], policy=RoleBasedPolicy(roles=["writer"]),
                     actions=[AuthzedAction.WRITE_ONLINE])
"""
BY_SERVICE = {"feature_service": "svc", "entities": {"user_id": [1], "merchant_id": ["m"], "amount": [1.0]}}
BY_REFS = {"features": ["profile:age"], "entities": {"user_id": [1]}}
NO_SVC = "this token may not read feature service 'svc'"
NO_PROFILE = "this token may not read view(s) profile"


def _client_roles(*roles: str, client: str = CLIENT) -> dict[str, Any]:
    return {"resource_access": {client: {"roles": list(roles)}, "account": {"roles": ["view-profile"]}}}


def _repo(stack: Settings, home: Path, auth_yaml: str) -> Settings:
    """The serving tests' repo with PERMISSIONS and `auth_yaml` in its feature_store.yaml."""
    repo = home / "repo"
    repo.mkdir()
    for name, text in SERVING_REPO_FILES.items():
        (repo / name).write_text(text)
    (repo / "permissions.py").write_text(PERMISSIONS)
    with (repo / "feature_store.yaml").open("a") as yaml:
        yaml.write(auth_yaml)
    return dataclasses.replace(stack, repo=repo)


def _oidc_yaml(url: str) -> str:
    return f"auth:\n  type: oidc\n  client_id: {CLIENT}\n  auth_discovery_url: {url}\n"


@pytest.fixture(scope="module")
def idp() -> Iterator[str]:
    """The discovery document's URL."""
    with jwks_server(jwks(RSA, EC), DISCOVERY) as (jwks_url, _, _):
        yield jwks_url.rsplit("/", 1)[0] + DISCOVERY_PATH


@pytest.fixture(scope="module")
def server(stack: Settings, idp: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    settings = _repo(stack, tmp_path_factory.mktemp("feast-oidc"), _oidc_yaml(idp))
    proc = start_server(settings)
    try:
        yield proc
    finally:
        proc.stop()


def _post(server: ServerProcess, body: dict[str, Any], token: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    return httpx.post(f"{server.url}/get-online-features", json=body, headers=headers, timeout=10)


def test_serve_says_where_its_keys_and_access_come_from(server: ServerProcess, idp: str) -> None:
    log = server.log_text()
    assert f"auth: feature_store.yaml auth oidc ({idp} -> " in log and "/jwks.json)" in log, log
    assert "3 Feast Permission(s) (roles/groups: analyst, svc-reader, writer)" in log, log


# (token, request, status, detail): made when the test runs, so none expires first.
CASES: list[tuple[Callable[[], str], dict[str, Any], int, str]] = [
    (lambda: RSA.token(**_client_roles("svc-reader")), BY_SERVICE, 200, ""),
    (lambda: RSA.token(**_client_roles("svc-reader")), BY_REFS, 403, NO_PROFILE),
    (lambda: RSA.token(roles=["analyst"]), BY_REFS, 200, ""),  # Entra ID's top-level roles
    (lambda: RSA.token(roles=["analyst"]), BY_SERVICE, 403, NO_SVC),
    (lambda: RSA.token(**_client_roles("writer", "analyst-not")), BY_REFS, 403, NO_PROFILE),
    (lambda: RSA.token(**_client_roles("svc-reader", client="other-app")), BY_SERVICE, 403, NO_SVC),
    (lambda: RSA.token(realm_access={"roles": ["svc-reader"]}), BY_SERVICE, 403, NO_SVC),
    # Feast checks neither issuer nor audience unless the yaml sets them.
    (lambda: RSA.token(**_client_roles("svc-reader"), iss="https://x.test/", aud="x"), BY_SERVICE, 200, ""),
    (lambda: RSA.token(roles=["analyst"], exp=int(time.time()) - 3), BY_REFS, 200, ""),  # Feast's 10 s leeway
    (lambda: RSA.token(roles=["analyst"], exp=int(time.time()) - 60), BY_REFS, 401, "the token has expired"),
    (lambda: RSA.token(roles=["analyst"], sub=None), BY_REFS, 401, "the token names no user"),
]  # fmt: skip
IDS = ["svc-role", "svc-role-refs", "top-roles", "top-roles-svc", "writer", "other-client", "realm-role",
       "any-iss-aud", "leeway", "expired", "no-user"]  # fmt: skip


@pytest.mark.parametrize(("token", "body", "status", "detail"), CASES, ids=IDS)
def test_tokens_are_judged_as_feast_judges_them(
    server: ServerProcess, token: Callable[[], str], body: dict[str, Any], status: int, detail: str
) -> None:
    response = _post(server, body, token())
    assert response.status_code == status, response.text
    if status != 200:
        assert response.json()["detail"].startswith(detail), response.text
    if status == 401:
        challenge = response.headers["www-authenticate"]
        expected = f'Bearer realm="featureline", error="invalid_token", error_description="{detail}'
        assert challenge.startswith(expected), challenge


def test_an_ec_key_of_the_set_verifies_too(server: ServerProcess) -> None:
    """Feast's parser takes RS256 only; any asymmetric key of the IdP's set verifies here."""
    assert _post(server, BY_SERVICE, EC.token(**_client_roles("svc-reader"))).status_code == 200


@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_feast_itself_decides_the_same(idp: str, case: int) -> None:
    """Feast's OidcTokenParser (roles) and enforce_policy (the same Permissions) on the
    same token: its 401 / 403 / 200 is ours."""
    from feast import FeatureService, FeatureView, FileSource
    from feast.errors import FeastPermissionError
    from feast.permissions.action import AuthzedAction
    from feast.permissions.auth.oidc_token_parser import OidcTokenParser
    from feast.permissions.auth_model import OidcAuthConfig
    from feast.permissions.enforcer import enforce_policy
    from starlette.authentication import AuthenticationError

    token, body, status, _ = CASES[case]
    objects: dict[str, Any] = {}
    exec(PERMISSIONS, objects)  # noqa: S102  # the repo's permissions.py, as Feast reads it
    parser = OidcTokenParser(OidcAuthConfig(type="oidc", auth_discovery_url=idp, client_id=CLIENT))
    source = FileSource(name="src", path="/nonexistent/src.parquet", timestamp_field="event_timestamp")
    # What Feast's permission matching reads of the served objects: type and name.
    profile = FeatureView(name="profile", entities=[], source=source, schema=[])
    resource = FeatureService(name="svc", features=[]) if "feature_service" in body else profile
    permissions = [objects[name] for name in ("svc_readers", "view_readers", "writers")]
    try:
        user = asyncio.run(parser.user_details_from_access_token(token()))
        enforce_policy(permissions, user, [resource], [AuthzedAction.READ_ONLINE])
        feast_status = 200
    except AuthenticationError:
        feast_status = 401
    except FeastPermissionError:
        feast_status = 403
    assert feast_status == status


def _refused(settings: Settings) -> str:
    done = serve_until_exit(settings)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_an_unreadable_idp_stops_serve_in_one_line(stack: Settings, tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}{DISCOVERY_PATH}"  # nothing listens once closed
    line = _refused(_repo(stack, tmp_path, _oidc_yaml(url)))
    assert f"cannot read the OIDC discovery document {url}" in line and "Connection refused" in line, line


def test_a_discovery_document_without_jwks_uri_stops_serve(stack: Settings, tmp_path: Path) -> None:
    with jwks_server(jwks(RSA), {**DISCOVERY, "jwks_uri": None}) as (jwks_url, _, _):
        url = jwks_url.rsplit("/", 1)[0] + DISCOVERY_PATH
        line = _refused(_repo(stack, tmp_path, _oidc_yaml(url)))
    assert f"the OIDC discovery document {url}" in line and "has no jwks_uri" in line, line


def test_kubernetes_auth_is_refused_naming_what_to_use(stack: Settings, tmp_path: Path) -> None:
    line = _refused(_repo(stack, tmp_path, "auth:\n  type: kubernetes\n"))
    assert "auth type kubernetes is not supported" in line and "--auth-jwks" in line, line


def test_flags_override_the_yaml(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    configure_jwt(parser)
    oidc = FeastOidc(
        "https://idp.test/d", "https://idp.test/keys", client_id=CLIENT, issuer="https://idp.test"
    )
    granted = (PermissionSpec("p", "roles", roles=("analyst",), views=("profile",)),)
    from_yaml = jwt_settings(parser.parse_args([]), oidc, granted)
    assert (from_yaml.jwks, from_yaml.issuer) == ("https://idp.test/keys", "https://idp.test")
    assert from_yaml.audience == ()
    assert from_yaml.leeway_s == 10.0 and from_yaml.claim_map == "" and from_yaml.always == frozenset()
    roles = {"analyst": frozenset({"view:profile"})}
    assert from_yaml.grants == ((("resource_access", CLIENT, "roles"), roles), (("roles",), roles))
    assert jwt_settings(parser.parse_args([]), oidc, ()).always == frozenset({"*"})  # no Permission: all
    flags = ["--auth-jwks", "keys.json", "--auth-issuer", "https://other.test", "--auth-audience", "api",
             "--auth-leeway-s", "30", "--auth-claim-map", "claims.txt"]  # fmt: skip
    overridden = jwt_settings(parser.parse_args(flags), oidc, granted)
    assert overridden.jwks == str(Path("keys.json").resolve()) and overridden.issuer == "https://other.test"
    assert overridden.audience == ("api",) and overridden.leeway_s == 30.0
    assert Path(overridden.claim_map).is_absolute() and overridden.grants == () and overridden.claim == ""
    assert overridden.role_claims == (("resource_access", CLIENT, "roles"), ("roles",))
    with pytest.raises(BadInputError, match="--auth-claim needs --auth-claim-map"):
        jwt_settings(parser.parse_args(["--auth-claim", "groups"]), oidc, granted)


def test_the_key_sets_lifespan_and_timeout_come_from_the_yaml(idp: str, tmp_path: Path) -> None:
    """jwks_cache_lifespan_seconds is the key set's refresh and jwks_request_timeout_seconds
    its fetch timeout, unless --auth-jwks-refresh-s / --auth-jwks say otherwise."""
    from featureline.serving_api.feast_auth import read_feast_oidc
    from featureline.serving_api.serve_flags import jwks_refresh_s

    repo = tmp_path / "repo"
    repo.mkdir()
    timing = "  jwks_cache_lifespan_seconds: 60\n  jwks_request_timeout_seconds: 2.5\n"
    (repo / "feature_store.yaml").write_text("project: p\n" + _oidc_yaml(idp) + timing)
    oidc = read_feast_oidc(repo)
    assert oidc is not None and (oidc.jwks_lifespan_s, oidc.jwks_timeout_s) == (60.0, 2.5)
    parser = argparse.ArgumentParser()
    configure_jwt(parser)
    assert jwks_refresh_s(parser.parse_args([]), oidc) == 60.0
    assert jwks_refresh_s(parser.parse_args(["--auth-jwks-refresh-s", "120"]), oidc) == 120.0
    assert jwks_refresh_s(parser.parse_args([]), None) == 300.0
    assert jwt_settings(parser.parse_args([]), oidc, ()).fetch_timeout_s == 2.5
    own = ["--auth-jwks", "keys.json"]  # another key set: its own (default) timeout
    assert jwt_settings(parser.parse_args(own), oidc, ()).fetch_timeout_s == 5.0
    (repo / "feature_store.yaml").write_text(
        "project: p\n" + _oidc_yaml(idp) + "  jwks_cache_lifespan_seconds: 0\n"
    )
    with pytest.raises(BadInputError, match="jwks_cache_lifespan_seconds must be a number of seconds > 0"):
        read_feast_oidc(repo)


def test_a_permission_on_a_service_grants_no_view_of_the_same_name() -> None:
    """Feast lets a feature service and a feature view share a name; a Permission names
    one kind (its types), so its grant must not reach the other."""
    from types import SimpleNamespace

    from featureline.serving_api.auth import check
    from featureline.serving_api.feast_auth import permission_grants
    from featureline.serving_api.limits import ForbiddenError

    only_service = (PermissionSpec("p", "roles", roles=("analyst",), services=("profile",)),)
    ((_, table), _), always = permission_grants(only_service, CLIENT)
    scope = table["analyst"] | always
    reading_the_view: Any = SimpleNamespace(views=("profile",))
    check(scope, reading_the_view, "profile")  # the service: granted
    with pytest.raises(ForbiddenError, match="may not read view"):
        check(scope, reading_the_view, None)
    check(frozenset({"profile"}), reading_the_view, None)  # a claim map's plain name: both kinds
