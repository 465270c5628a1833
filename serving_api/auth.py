"""Optional bearer-token auth: off by default (dev stack), on with a tokens file.

The file has one token per line with what it may read:

    # token                      access
    3f9c...e1                    *                       # everything
    a71b...04                    fraud_model_v1          # one feature service
    c2d0...9a                    user_profile,merchant_risk

A request by feature service needs that service (or `*`); a request by feature refs
needs every view it reads (on-demand views and their sources included), or `*`.
Tokens are kept as SHA-256 digests, so the lookup does not compare secrets byte by
byte (no timing signal about a token's prefix).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from featureline.errors import BadInputError
from featureline.serving_api.limits import ForbiddenError, UnauthenticatedError
from featureline.serving_api.plans import ReadPlan

WWW_AUTHENTICATE = 'Bearer realm="featureline"'
ALL = "*"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class TokenAuth:
    scopes: dict[bytes, frozenset[str]]  # sha256(token) -> allowed names

    @classmethod
    def from_file(cls, path: str | Path) -> TokenAuth:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise BadInputError(f"cannot read the auth tokens file {str(path)!r}: {exc}") from None
        scopes: dict[bytes, frozenset[str]] = {}
        for number, line in enumerate(text.splitlines(), 1):
            content = line.split("#", 1)[0].split()
            if not content:
                continue
            if len(content) != 2:
                raise BadInputError(
                    f"{path}:{number}: expected `TOKEN ACCESS` (ACCESS: * or comma-separated "
                    "feature services / views)"
                )
            token, access = content
            scopes[_digest(token)] = frozenset(a for a in access.split(",") if a)
        if not scopes:
            raise BadInputError(f"the auth tokens file {path} holds no token")
        return cls(scopes)

    def scope(self, authorization: str | None) -> frozenset[str]:
        """The access of an `Authorization` header value; UnauthenticatedError if none."""
        if not authorization:
            raise UnauthenticatedError("missing bearer token (Authorization: Bearer <token>)")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthenticatedError("the Authorization header must be `Bearer <token>`")
        scope = self.scopes.get(_digest(token.strip()))
        if scope is None:
            raise UnauthenticatedError("invalid bearer token")
        return scope

    @staticmethod
    def check(scope: frozenset[str], plan: ReadPlan, service: str | None) -> None:
        if ALL in scope:
            return
        if service is not None:
            if service not in scope:
                raise ForbiddenError(f"this token may not read feature service {service!r}")
            return
        denied = [v for v in plan.views if v not in scope]
        if denied:
            raise ForbiddenError(f"this token may not read view(s) {', '.join(denied)}")

    def authorize(self, authorization: str | None, plan: ReadPlan, service: str | None) -> None:
        self.check(self.scope(authorization), plan, service)
