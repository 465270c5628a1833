"""What `featureline serve` authenticates with: the tokens file, the JWT verifier, both,
or nothing. Apart from serving_api.auth so that it may import serving_api.auth_jwt
(which imports auth) without a cycle, and PyJWT only when JWT auth is on."""

from __future__ import annotations

from featureline.serving_api.auth import JwtSettings, TokenAuth, TokenVerifier
from featureline.serving_api.limits import Limits


def load_auth(tokens_file: str, jwt: JwtSettings | None, limits: Limits, *,
              strict: bool = True) -> TokenAuth | None:  # fmt: skip
    """What `featureline serve` authenticates with (None: auth is off). The JWKS is read
    here, at start: BadInputError if it cannot be, unless not `strict` (a worker, whose
    IdP may be down for a while: it starts with no key and fetches one when a token
    needs it)."""
    verifier: TokenVerifier | None = None
    if jwt is not None:
        from featureline.serving_api.auth_jwt import JwtAuth

        verifier = JwtAuth(jwt, limits, strict=strict)
    if tokens_file:
        return TokenAuth.from_file(tokens_file, verifier)
    return TokenAuth({}, verifier) if verifier is not None else None
