"""feature_store.yaml's `auth:` block, as `feast serve` reads it, for `featureline serve`.

`type: oidc` (Feast's OidcAuthConfig and OidcTokenParser) becomes our JwtAuth:

- the key set is the discovery document's `jwks_uri` (the document is read once, at
  start; workers get the URI, never the document);
- `iss` / `aud` are checked only when the block sets `issuer` / `audience` (Feast's
  default is to check neither), exp with Feast's 10 s of leeway;
- roles are `resource_access.<client_id>.roles` (with a client_id) and the top-level
  `roles` (Entra ID), groups the `groups` claim; a token must name a user
  (preferred_username, upn, azp, appid or sub);
- what they may read comes from the repo's Feast Permissions that grant READ_ONLINE
  (RepoSpec.permissions, matched by Feast at parse time): a role or group reads what
  any such permission naming it covers, AllowAll ones grant every token; a repo with
  no Permission lets every authenticated token read everything, as Feast does.

`type: kubernetes` is refused at start (TokenReview-based auth is not implemented);
`no_auth`, or no block, leaves auth to the flags. Each flag set overrides the file.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from featureline.errors import BadInputError
from featureline.serving_api.auth import ALL, SERVICE_GRANT, VIEW_GRANT, JwtSettings
from featureline.serving_api.auth_jwks import tls_context
from featureline.specs import PermissionSpec

# Feast's OidcTokenParser: jwt.decode(..., leeway=10).
FEAST_LEEWAY_S = 10.0
# OidcTokenParser._extract_username_or_raise_error, in its order.
USERNAME_CLAIMS = ("preferred_username", "upn", "azp", "appid", "sub")
# A discovery document is a few KB; this bounds what a broken endpoint makes us read.
MAX_DISCOVERY_BYTES = 1024 * 1024
FETCH_TIMEOUT_S = 10.0  # Feast's jwks_request_timeout_seconds default
_TYPES = ("no_auth", "oidc", "kubernetes")


@dataclass(frozen=True)
class FeastOidc:
    """feature_store.yaml's `auth: {type: oidc, ...}`, its discovery document read."""

    discovery_url: str
    jwks_uri: str
    client_id: str = ""
    issuer: str = ""
    audience: str = ""
    tls_ca: str = ""  # ca_cert_path, when the file exists (as Feast)
    tls_verify: bool = True  # verify_ssl
    jwks_lifespan_s: float = 300.0  # jwks_cache_lifespan_seconds: the key set's refresh
    jwks_timeout_s: float = 10.0  # jwks_request_timeout_seconds: a key-set fetch's timeout


def _fetch_discovery(url: str, context: Any) -> dict[str, Any]:
    where = f"the OIDC discovery document {url} (feature_store.yaml auth.auth_discovery_url)"
    try:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S, context=context) as reply:  # noqa: S310  # http(s), checked by the caller
            data: bytes = reply.read(MAX_DISCOVERY_BYTES + 1)
        if len(data) > MAX_DISCOVERY_BYTES:
            raise ValueError(f"larger than {MAX_DISCOVERY_BYTES} bytes")
        document = json.loads(data)
    except (OSError, ValueError) as exc:  # URLError, HTTPError, JSONDecodeError included
        raise BadInputError(f"cannot read {where}: {exc}") from None
    if not isinstance(document, dict):
        raise BadInputError(f"{where} is not a JSON object")
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("http://", "https://")):
        raise BadInputError(f"{where} has no jwks_uri (an http(s) URL of the IdP's key set)")
    return document


def _auth_block(repo: Path) -> dict[str, Any] | None:
    """The `auth:` block of the repo's feature_store.yaml (None: none, or no yaml, as
    with FEATURELINE_SPECS_FILE)."""
    from featureline.repo import read_store_yaml

    if not (repo / "feature_store.yaml").is_file():
        return None
    auth = read_store_yaml(repo).get("auth")
    if auth is None:
        return None
    if isinstance(auth, str):  # Feast also takes `auth: no_auth`
        auth = {"type": auth}
    if not isinstance(auth, dict) or auth.get("type") not in _TYPES:
        shown = auth.get("type") if isinstance(auth, dict) else auth
        raise BadInputError(f"feature_store.yaml: auth type {shown!r} is not one of {', '.join(_TYPES)}")
    return auth


def read_feast_oidc(repo: Path) -> FeastOidc | None:
    """The repo's `auth: oidc`, its discovery document fetched now (None: no_auth or no
    block); BadInputError, one line, for kubernetes or a document that cannot be used."""
    auth = _auth_block(repo)
    if auth is None or auth["type"] == "no_auth":
        return None
    if auth["type"] == "kubernetes":
        raise BadInputError(
            "feature_store.yaml: auth type kubernetes is not supported by featureline serve "
            "(it would need Kubernetes TokenReview and RBAC lookups); use auth type oidc, "
            "--auth-jwks (e.g. the cluster's service-account issuer JWKS) or --auth-tokens"
        )
    url = auth.get("auth_discovery_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise BadInputError("feature_store.yaml: auth type oidc needs auth_discovery_url (an http(s) URL)")
    ca = str(auth.get("ca_cert_path") or "")
    lifespan = _positive(auth, "jwks_cache_lifespan_seconds", 300.0)
    timeout = _positive(auth, "jwks_request_timeout_seconds", 10.0)
    oidc = FeastOidc(
        discovery_url=url,
        jwks_uri="",
        client_id=str(auth.get("client_id") or ""),
        issuer=str(auth.get("issuer") or ""),
        audience=str(auth.get("audience") or ""),
        tls_ca=ca if ca and Path(ca).is_file() else "",
        tls_verify=auth.get("verify_ssl", True) is not False,
        jwks_lifespan_s=lifespan,
        jwks_timeout_s=timeout,
    )
    document = _fetch_discovery(url, tls_context(oidc.tls_ca, oidc.tls_verify))
    return replace(oidc, jwks_uri=document["jwks_uri"])


def _positive(auth: Mapping[str, Any], key: str, default: float) -> float:
    """A number of seconds of the block, > 0 as Feast's OidcAuthConfig requires."""
    value = auth.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise BadInputError(f"feature_store.yaml: auth.{key} must be a number of seconds > 0, not {value!r}")
    return float(value)


def role_claims(client_id: str) -> tuple[tuple[str, ...], ...]:
    """Where Feast reads roles: Keycloak's per-client roles, and Entra ID's `roles`."""
    return ((("resource_access", client_id, "roles"),) if client_id else ()) + (("roles",),)


def permission_grants(
    permissions: tuple[PermissionSpec, ...], client_id: str
) -> tuple[tuple[tuple[tuple[str, ...], Mapping[str, frozenset[str]]], ...], frozenset[str]]:
    """(JwtSettings.grants, JwtSettings.always) of the repo's Feast Permissions."""
    if not permissions:  # Feast's enforce_policy: no permission, every user reads all
        return (), frozenset({ALL})
    roles: dict[str, set[str]] = {}
    groups: dict[str, set[str]] = {}
    always: set[str] = set()
    for permission in permissions:
        # Kind-qualified: a permission on service `x` grants no view named `x`.
        names = {VIEW_GRANT + v for v in permission.views} | {SERVICE_GRANT + s for s in permission.services}
        if permission.policy == "allow_all":
            always |= names
        elif permission.policy == "roles":
            for role in permission.roles:
                roles.setdefault(role, set()).update(names)
        elif permission.policy in ("groups", "groups_namespaces"):
            for group in permission.groups:
                groups.setdefault(group, set()).update(names)
        # namespaces: an OIDC token carries none (Feast fills them only from a
        # Kubernetes TokenReview), so such a policy grants nothing here either.
    role_table = {role: frozenset(names) for role, names in roles.items()}
    grants = tuple((path, role_table) for path in role_claims(client_id) if role_table)
    if groups:
        grants += ((("groups",), {group: frozenset(names) for group, names in groups.items()}),)
    return grants, frozenset(always)


def apply_oidc(
    settings: JwtSettings, oidc: FeastOidc, permissions: tuple[PermissionSpec, ...]
) -> JwtSettings:
    """`settings` (the flags') completed by the yaml's oidc: Feast's role claims for a
    claim map without --auth-claim, else the Permissions' grants; Feast's username rule
    and TLS settings."""
    extra: dict[str, Any] = {}
    if not settings.claim_map:
        extra["grants"], extra["always"] = permission_grants(permissions, oidc.client_id)
    return replace(
        settings,
        role_claims=role_claims(oidc.client_id),
        username_claims=USERNAME_CLAIMS,
        tls_ca=oidc.tls_ca if settings.jwks == oidc.jwks_uri else settings.tls_ca,
        tls_verify=oidc.tls_verify if settings.jwks == oidc.jwks_uri else settings.tls_verify,
        fetch_timeout_s=oidc.jwks_timeout_s if settings.jwks == oidc.jwks_uri else settings.fetch_timeout_s,
        **extra,
    )


def describe(settings: JwtSettings, oidc: FeastOidc, permissions: tuple[PermissionSpec, ...]) -> None:
    """One stderr line on what the yaml's oidc grants (read by people starting serve)."""
    source = f"feature_store.yaml auth oidc ({oidc.discovery_url} -> {settings.jwks})"
    if settings.claim_map:
        print(f"auth: {source}, access from the claim map {settings.claim_map}", file=sys.stderr)
    elif not permissions:
        print(
            f"auth: {source}; warning: the repo defines no Feast Permission, so every "
            "authenticated token may read everything (as feast serve)",
            file=sys.stderr,
        )
    else:
        who = sorted({r for p in permissions for r in (*p.roles, *p.groups)})
        print(
            f"auth: {source}, access from {len(permissions)} Feast Permission(s) "
            f"(roles/groups: {', '.join(who) or 'none'})",
            file=sys.stderr,
        )
