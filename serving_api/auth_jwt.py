"""OIDC/JWT bearer tokens (`featureline serve --auth-jwks ...`): signature (PyJWT, keys from
serving_api.auth_jwks), issuer, audience, exp / nbf / iat with a leeway, then the values
of one claim mapped to feature services and views by a claim map (`CLAIM_VALUE ACCESS`
lines, the tokens file's format). The access rule itself is serving_api.auth.check.

Only asymmetric algorithms are accepted, each only with a key of its type: never
`none`, never HS* (an HMAC keyed with a public key would let anyone sign).

A verified token's access is cached under the token's SHA-256 until its exp (bounded
LRU, Limits.jwt_cache_tokens), so a client reusing its token pays the check once.
Measured per call of TokenAuth.scope (CPU time, 2-core box, PyJWT 2.15, cryptography
50): a static token 1.2 us; a cached JWT 2.5-3 us; uncached, RS256 (2048-bit) 150-175 us
and ES256 230-240 us, of which PyJWT's base64 and claim checks are ~2/3.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import jwt
from jwt import exceptions as jwt_errors

from featureline.errors import BadInputError
from featureline.serving_api.auth import JwtSettings, KeysPending, read_access_file
from featureline.serving_api.auth_jwks import Key, KeySet, fetch_jwks, tls_context
from featureline.serving_api.limits import Limits, UnauthenticatedError

log = logging.getLogger("featureline.serving.auth")

_FAMILY = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}  # alg prefix -> kty
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                        "ES256", "ES384", "ES512", "EdDSA"})  # fmt: skip


def claim_values(claims: Mapping[str, Any], name: str) -> list[str]:
    """The values of claim `name`: a space-separated string or a list of strings. `scope`
    also reads `scp` (Azure AD, Okta); a dotted name not found as such is a path into
    nested objects (Keycloak's `realm_access.roles`)."""
    names = ["scope", "scp"] if name == "scope" else [name]
    values: list[str] = []
    for claim in names:
        value: Any = claims.get(claim)
        if value is None and "." in claim:
            value = claims
            for part in claim.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, str):
            values.extend(value.split())
        elif isinstance(value, list):
            values.extend(v for v in value if isinstance(v, str))
    return values


def path_values(claims: Mapping[str, Any], path: tuple[str, ...]) -> list[str]:
    """The strings of the list at key path `path` (Feast's role and group claims: a
    missing key or a value that is not a list is no value)."""
    value: Any = claims
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


class TokenCache:
    """sha256(token) -> (access, valid until) for verified tokens; least recently used
    out first beyond `size` (0: no cache)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[bytes, tuple[frozenset[str], float]] = OrderedDict()

    def get(self, digest: bytes, now: float) -> frozenset[str] | None:
        entry = self.entries.get(digest)
        if entry is None:
            return None
        if now >= entry[1]:
            del self.entries[digest]
            return None
        self.entries.move_to_end(digest)
        return entry[0]

    def put(self, digest: bytes, access: frozenset[str], until: float) -> None:
        if self.size <= 0:
            return
        self.entries[digest] = (access, until)
        self.entries.move_to_end(digest)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)

    def clear(self) -> None:
        self.entries.clear()


def _claim_error(exc: jwt_errors.PyJWTError, settings: JwtSettings) -> str:
    """What a caller reads of a failed check (the error_description of the 401)."""
    if isinstance(exc, jwt_errors.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(exc, jwt_errors.ImmatureSignatureError):
        return "the token is not valid yet (nbf or iat is in the future)"
    if isinstance(exc, jwt_errors.InvalidAudienceError):
        return f"the token's audience is not {' or '.join(settings.audience)}"
    if isinstance(exc, jwt_errors.InvalidIssuerError):
        return f"the token's issuer is not {settings.issuer}"
    if isinstance(exc, jwt_errors.InvalidSignatureError):
        return "the token's signature does not verify"
    if isinstance(exc, jwt_errors.MissingRequiredClaimError):
        return f"the token has no {exc.claim} claim"
    return f"malformed token ({exc})"


def _shown(value: Any) -> str:
    """A caller's header value in our reply: what a person needs to recognise it (kids
    are ~40 characters), not a way to make the reply as large as the token."""
    text = str(value)
    return text if len(text) <= 64 else f"{text[:64]}..."


def _header(token: str) -> dict[str, Any]:
    """The token's header, read only to pick the key: jwt.decode parses and checks it
    again (reading it with jwt.get_unverified_header would cost a second pass of
    PyJWT's per-character base64 check, ~40% of an uncached RS256 token's cost)."""
    head = token.split(".", 1)[0]
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    return header


class JwtAuth:
    """Verifies JWTs and maps their claim to access (a TokenAuth's `jwt`)."""

    def __init__(self, settings: JwtSettings, limits: Limits, keys: KeySet | None = None, *,
                 strict: bool = True) -> None:  # fmt: skip
        bad = set(settings.algorithms) - ASYMMETRIC
        if bad:
            raise ValueError(f"algorithms {sorted(bad)} are not allowed (asymmetric only)")
        self.settings = settings
        self.claim_map = (
            read_access_file(settings.claim_map, "claim map", "CLAIM_VALUE") if settings.claim_map else {}
        )
        self.max_token_bytes = limits.jwt_max_token_bytes
        self.cache = TokenCache(limits.jwt_cache_tokens)
        if keys is None:
            context = None
            if settings.tls_ca or not settings.tls_verify:
                context = tls_context(settings.tls_ca, settings.tls_verify)
            fetch = functools.partial(fetch_jwks, context=context, timeout_s=settings.fetch_timeout_s)
            keys = KeySet(settings.jwks, limits.jwks_refresh_s, limits.jwks_min_refresh_s, fetch)
            try:
                keys.load()
            except BadInputError as exc:
                if strict:  # `featureline serve` at start: stop, in one line
                    raise
                # A worker (re)started while the IdP is down: serve, fetch when a token needs a key.
                log.warning("%s; starting with no key", exc)
        self.keys = keys
        keys.on_change = self.cache.clear  # a withdrawn key's tokens verify no more
        # An issuer or audience left unset (feature_store.yaml's oidc, as Feast) is not
        # checked: PyJWT would refuse every token with an `aud` given no audience.
        self._options: Any = {
            "require": ["exp"] + ["iss"] * bool(settings.issuer) + ["aud"] * bool(settings.audience),
            "verify_iss": bool(settings.issuer),
            "verify_aud": bool(settings.audience),
        }

    def scope(self, token: str, digest: bytes) -> frozenset[str]:
        """The access of a JWT (UnauthenticatedError saying why not; KeysPending when it
        needs a key whose fetch is under way)."""
        if self.keys.pending is None:
            self.keys.refresh(unknown_kid=False)  # periodic, in a thread; no-op when fresh
        now = time.time()
        access = self.cache.get(digest, now)
        if access is not None:
            return access
        if len(token) > self.max_token_bytes:
            raise UnauthenticatedError(
                f"the token is larger than {self.max_token_bytes} bytes (--auth-max-token-bytes)"
            )
        claims = self._verify(token)
        access = self._access(claims)
        self.cache.put(digest, access, float(claims["exp"]) + self.settings.leeway_s)
        return access

    def _access(self, claims: Mapping[str, Any]) -> frozenset[str]:
        """What a verified token may read: the claim map's grants for its claim's values,
        those of feature_store.yaml's Permissions (`grants`), and `always`."""
        settings = self.settings
        access = set(settings.always)
        if self.claim_map:
            if settings.claim:
                values = claim_values(claims, settings.claim)
            else:
                values = [v for path in settings.role_claims for v in path_values(claims, path)]
            access.update(*(self.claim_map.get(v, ()) for v in values))
        for path, table in settings.grants:
            access.update(*(table.get(v, ()) for v in path_values(claims, path)))
        return frozenset(access)

    def _key(self, header: Mapping[str, Any]) -> tuple[Key, str]:
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self.settings.algorithms:
            allowed = ", ".join(self.settings.algorithms)
            raise UnauthenticatedError(f"the token's algorithm {_shown(alg)} is not allowed ({allowed})")
        if kid is not None and not isinstance(kid, str):
            raise UnauthenticatedError("malformed token (kid is not a string)")
        key = self.keys.find(kid)
        if key is None:
            refresh = self.keys.refresh(unknown_kid=True)
            if refresh is not None:
                message = f"unknown signing key {_shown(kid)} (the key set is being fetched)"
                raise KeysPending(message, refresh)
            key = self.keys.find(kid)  # fetched in this thread (no event loop), or not due
        if key is None:
            if kid is None:
                n_keys = len(self.keys.keys)
                raise UnauthenticatedError(f"the token has no kid and the key set holds {n_keys} keys")
            raise UnauthenticatedError(f"unknown signing key {_shown(kid)}")
        if _FAMILY.get(alg[:2]) != key.kty or (key.alg is not None and key.alg != alg):
            raise UnauthenticatedError(f"key {kid} is an {key.alg or key.kty} key, the token says {alg}")
        return key, alg

    def _verify(self, token: str) -> dict[str, Any]:
        settings = self.settings
        try:
            header = _header(token)
        except Exception:  # base64, JSON, or JSON nested past the recursion limit
            raise UnauthenticatedError("malformed token (its header is not base64url JSON)") from None
        try:
            key, alg = self._key(header)
            claims: dict[str, Any] = jwt.decode(
                token, key.jwk.key, algorithms=[alg], audience=list(settings.audience),
                issuer=settings.issuer, leeway=settings.leeway_s, options=self._options,
            )  # fmt: skip
        except UnauthenticatedError:
            raise
        except jwt_errors.PyJWTError as exc:
            raise UnauthenticatedError(_claim_error(exc, settings)) from None
        except Exception as exc:  # e.g. claims nested past the recursion limit: still a 401
            log.debug("unreadable token", exc_info=exc)
            raise UnauthenticatedError("malformed token") from None
        if not isinstance(claims.get("exp"), int | float):
            raise UnauthenticatedError("malformed token (exp is not a number)")
        names = settings.username_claims
        if names and not any(isinstance(claims.get(n), str) for n in names):
            raise UnauthenticatedError(f"the token names no user (none of {', '.join(names)})")
        return claims
