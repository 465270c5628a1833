"""Optional bearer-token auth: off by default (dev stack), on with a tokens file, with
OIDC/JWT tokens verified against a JWKS (serving_api.auth_jwt), or both.

The tokens file has one token per line with what it may read:

    # token                      access
    3f9c...e1                    *                       # everything
    a71b...04                    fraud_model_v1          # one feature service
    c2d0...9a                    user_profile,merchant_risk

A JWT's access comes from a claim map of the same shape, `CLAIM_VALUE ACCESS` lines,
applied to the values of its scope or groups claim. Either way a token ends up as a set
of names, and ONE rule (`check`) decides: a request by feature service needs that
service (or `*`); a request by feature refs needs every view it reads (on-demand views
and their sources included), or `*`.
Tokens are kept as SHA-256 digests, so the lookup does not compare secrets byte by
byte (no timing signal about a token's prefix).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from featureline.errors import BadInputError
from featureline.serving_api.limits import ForbiddenError, UnauthenticatedError
from featureline.serving_api.plans import ReadPlan

if TYPE_CHECKING:
    from asyncio import Future

WWW_AUTHENTICATE = 'Bearer realm="featureline"'
ALL = "*"
# Grants of one kind of object only (feature_store.yaml's Feast Permissions name views and
# services apart, and Feast lets a service and a view share a name); the tokens file and
# claim maps grant plain names, which cover both.
SERVICE_GRANT = "service:"
VIEW_GRANT = "view:"
MISSING_TOKEN = "missing bearer token (Authorization: Bearer <token>)"
T = TypeVar("T")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def read_access_file(path: str | Path, what: str, key: str) -> dict[str, frozenset[str]]:
    """`KEY ACCESS` lines (ACCESS: * or comma-separated services / views; # comments)
    -> {key: access}. A second line with the same key adds to its access."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise BadInputError(f"cannot read the {what} {str(path)!r}: {exc}") from None
    access: dict[str, frozenset[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        content = line.split("#", 1)[0].split()
        if not content:
            continue
        if len(content) != 2:
            raise BadInputError(
                f"{path}:{number}: expected `{key} ACCESS` (ACCESS: * or comma-separated "
                "feature services / views)"
            )
        name, names = content
        access[name] = access.get(name, frozenset()) | frozenset(a for a in names.split(",") if a)
    if not access:
        raise BadInputError(f"the {what} {path} holds no `{key} ACCESS` line")
    return access


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` value; UnauthenticatedError if none."""
    if not authorization:
        raise UnauthenticatedError(MISSING_TOKEN)
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthenticatedError("the Authorization header must be `Bearer <token>`")
    return token


def check(scope: frozenset[str], plan: ReadPlan, service: str | None) -> None:
    """The one access rule, for static tokens and JWTs alike (ForbiddenError naming
    what is not granted)."""
    if ALL in scope:
        return
    if service is not None:
        if service not in scope and SERVICE_GRANT + service not in scope:
            raise ForbiddenError(f"this token may not read feature service {service!r}")
        return
    denied = [v for v in plan.views if v not in scope and VIEW_GRANT + v not in scope]
    if denied:
        raise ForbiddenError(f"this token may not read view(s) {', '.join(denied)}")


def challenge(message: str | None) -> str:
    """The `WWW-Authenticate` value of a 401 (RFC 6750 section 3): no error code when
    the request carried no token, else invalid_token with the reason."""
    if message is None:
        return WWW_AUTHENTICATE
    # A quoted-string may not hold `"` or `\` unescaped; control characters end the header.
    text = "".join(c if c.isprintable() and c not in '"\\' else "'" for c in message)
    return f'{WWW_AUTHENTICATE}, error="invalid_token", error_description="{text}"'


class KeysPending(UnauthenticatedError):
    """A JWT signed by a key not (yet) in the key set, whose refresh is under way in a
    thread: a transport may wait for it (`after_keys`) and try the request once more;
    one that does not answers 401 with this message."""

    def __init__(self, message: str, refresh: Future[Any]) -> None:
        super().__init__(message)
        self.refresh = refresh

    async def wait(self) -> None:
        await asyncio.wait({self.refresh})  # never raises: a failed fetch keeps the old keys


async def after_keys(pending: KeysPending, again: Callable[[], T | Awaitable[T]]) -> T:
    """`again()` (the request, served anew) once the key set's refresh has finished. It
    cannot wait twice in a row: a key set just fetched is not fetched again within
    --auth-jwks-min-refresh-s, so the second try gets a plain 401 if the key is unknown."""
    await pending.wait()
    result = again()
    if inspect.isawaitable(result):
        return await result
    return result


class TokenVerifier(Protocol):
    def scope(self, token: str, digest: bytes) -> frozenset[str]: ...


@dataclass(frozen=True)
class JwtSettings:
    """`featureline serve --auth-jwks ...`: where the keys are and what a token must say."""

    jwks: str  # a file, or an http(s) URL
    issuer: str  # "": not checked (feature_store.yaml's oidc without `issuer`, as Feast)
    audience: tuple[str, ...]  # (): not checked (oidc without `audience`, as Feast)
    claim_map: str  # file of `CLAIM_VALUE ACCESS` lines ("": none)
    # `scope` reads `scope` (space-separated) and `scp` (a list); "": the claim map
    # applies to the values at `role_claims` (Feast's role claims, with `auth: oidc`).
    claim: str = "scope"
    role_claims: tuple[tuple[str, ...], ...] = ()  # exact key paths to lists of strings
    # Access from feature_store.yaml's Feast Permissions (serving_api.feast_auth): a
    # claim's key path and what each of its values may read; `always`: what every
    # verified token may read (AllowAll policies; `*` when the repo has no Permission).
    grants: tuple[tuple[tuple[str, ...], Mapping[str, frozenset[str]]], ...] = ()
    always: frozenset[str] = frozenset()
    # Non-empty: a token must hold one of these claims as a string (Feast's username).
    username_claims: tuple[str, ...] = ()
    # TLS of an https key set: a CA file ("": the system's), and whether to verify at
    # all (feature_store.yaml's oidc ca_cert_path / verify_ssl).
    tls_ca: str = ""
    tls_verify: bool = True
    # An https key set's fetch timeout (feature_store.yaml's oidc
    # jwks_request_timeout_seconds; 5 s otherwise). Fetches run off the event loop.
    fetch_timeout_s: float = 5.0
    # Clocks of the IdP and of this host differ by seconds; 60 s is what Envoy's
    # jwt_authn and Spring Security allow by default.
    leeway_s: float = 60.0
    algorithms: tuple[str, ...] = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                   "ES256", "ES384", "ES512", "EdDSA")  # fmt: skip


@dataclass(frozen=True)
class TokenAuth:
    """Static tokens (a digest -> access map) and, when given, a JWT verifier for the
    tokens that are not in it."""

    scopes: dict[bytes, frozenset[str]]  # sha256(token) -> allowed names
    jwt: TokenVerifier | None = None

    @classmethod
    def from_file(cls, path: str | Path, jwt: TokenVerifier | None = None) -> TokenAuth:
        access = read_access_file(path, "auth tokens file", "TOKEN")
        return cls({_digest(token): names for token, names in access.items()}, jwt)

    def scope(self, authorization: str | None) -> frozenset[str]:
        """The access of an `Authorization` header value; UnauthenticatedError if none."""
        token = bearer_token(authorization)
        digest = _digest(token)
        scope = self.scopes.get(digest)
        if scope is not None:
            return scope
        if self.jwt is not None and token.count(".") == 2:  # header.payload.signature
            return self.jwt.scope(token, digest)
        raise UnauthenticatedError("invalid bearer token")

    check = staticmethod(check)

    def authorize(self, authorization: str | None, plan: ReadPlan, service: str | None) -> None:
        check(self.scope(authorization), plan, service)
