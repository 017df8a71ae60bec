"""Bearer JWT auth: every service verifies tokens and enforces workspace and scope itself.

Keys come from a JWKS URL (production, any OIDC issuer) or a PEM public key (embedded mode, where
`journeygraph token` signs dev tokens with the matching private key).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import jwt
from cachetools import TTLCache
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.errors import (
    Forbidden,
    Problem,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    problem_response,
)
from services.common.settings import AuthSettings

SCOPES = {
    "journeys:read": "Read personas, journeys, touchpoints, customers and interactions.",
    "journeys:write": "Change the journey model; record customers, interactions and outcomes.",
    "feedback:read": "Read surveys, responses, metrics and cases.",
    "feedback:write": "Change surveys; submit responses; work on cases and webhooks.",
    "scores:read": "Read touchpoint scores, portfolio and journey health.",
    "admin": "Everything within the token's workspace.",
}
WORKSPACE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Caller:
    workspace_id: str
    subject: str
    scopes: frozenset[str]

    def has(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


class _JwksKeys:
    """JWKS fetched with httpx off the event loop's blocking path and refreshed on an unknown kid.

    PyJWT's PyJWKClient fetches synchronously and caches without expiry (PyJWT #1051), so the
    fetching is ours; parsing stays PyJWT's (PyJWKSet). An issuer that does not answer makes the
    requests that need a new key wait at most `timeout` (waiting for another request's fetch
    included), then 503; a failed fetch is not repeated for RETRY_AFTER_SECONDS.
    """

    def __init__(self, url: str, *, timeout: float, min_refresh_seconds: float = 30.0) -> None:
        self._url = url
        self._timeout = timeout
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._failed_until = 0.0
        self._min_refresh = min_refresh_seconds
        self._lock = asyncio.Lock()

    async def get(self, kid: str | None) -> jwt.PyJWK:
        if kid in self._keys:
            return self._keys[kid]
        try:
            async with asyncio.timeout(self._timeout), self._lock:
                now = time.monotonic()
                if kid not in self._keys and now - self._fetched_at > self._min_refresh:
                    if now < self._failed_until:
                        raise _unavailable("did not answer a moment ago")
                    try:
                        await self._fetch()
                    except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
                        self._failed_until = time.monotonic() + RETRY_AFTER_SECONDS
                        raise _unavailable(f"could not be read ({exc.__class__.__name__})") from None
        except TimeoutError:
            self._failed_until = time.monotonic() + RETRY_AFTER_SECONDS
            raise _unavailable(f"did not answer within {self._timeout} s") from None
        if kid not in self._keys:
            raise Unauthorized(f"The token's signing key {kid!r} is not published by the issuer.")
        return self._keys[kid]

    async def _fetch(self) -> None:
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            response = await client.get(self._url)
            response.raise_for_status()
        jwks = jwt.PyJWKSet.from_dict(response.json())
        keys: dict[str | None, jwt.PyJWK] = {k.key_id: k for k in jwks.keys if k.key_id}
        if len(jwks.keys) == 1:
            keys.setdefault(None, jwks.keys[0])
        self._keys, self._fetched_at = keys, time.monotonic()


RETRY_AFTER_SECONDS = 5


def _unavailable(what: str) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"The token issuer's key set {what}; tokens cannot be checked now. Retry in {RETRY_AFTER_SECONDS} s.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _static_key(pem: str) -> jwt.PyJWK:
    """A PEM public key as a PyJWK: its algorithm follows from the key (Ed25519 → EdDSA, an RSA key
    → RS256, a P-256 key → ES256, ...), never from the token's header."""
    key = serialization.load_pem_public_key(pem.encode())
    if isinstance(key, Ed25519PublicKey | Ed448PublicKey):
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(key, as_dict=True)
    elif isinstance(key, RSAPublicKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key, as_dict=True)
    elif isinstance(key, EllipticCurvePublicKey):
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(key, as_dict=True)
    else:
        raise ValueError(f"AUTH_PUBLIC_KEY holds a {type(key).__name__}; use an Ed25519, RSA or EC public key")
    return jwt.PyJWK(jwk)


class TokenVerifier:
    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings
        self._static_key = _static_key(settings.auth_public_key) if settings.auth_public_key else None
        self._jwks = (
            _JwksKeys(settings.auth_jwks_url, timeout=settings.auth_jwks_timeout_seconds)
            if settings.auth_jwks_url
            else None
        )
        self._limiter = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage_uri))
        self._limit = parse(settings.rate_limit)
        # A client sends the same token on every request until it expires: the signature check and
        # claim parsing are done once per token and minute (docs/engineering-notes.md has the cost).
        self._verified: TTLCache[str, tuple[Caller, float]] = TTLCache(maxsize=10_000, ttl=60)

    async def authenticate(self, request: Request) -> Caller:
        """The request's caller, rate limited. A request that fails to authenticate counts against
        the limit of its client address."""
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized(
                    "Send `Authorization: Bearer <token>`; `journeygraph token` mints one for development.",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            caller = await self.verify(token.strip())
        except Unauthorized:
            client = request.client.host if request.client else "unknown"
            await self._check_rate("per client address for requests that fail to authenticate", "anonymous", client)
            raise
        await self._check_rate("per token", caller.workspace_id, caller.subject)
        return caller

    async def verify(self, token: str) -> Caller:
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        caller, expires = await self._verify(token)
        self._verified[token] = (caller, expires)
        return caller

    async def _verify(self, token: str) -> tuple[Caller, float]:
        s = self._settings
        try:
            key = self._static_key
            if key is None:
                key = await self._jwks_key(jwt.get_unverified_header(token))
            if key.algorithm_name not in s.auth_algorithms:
                raise Unauthorized(
                    f"The token's signing key uses {key.algorithm_name}, which this service does not accept."
                )
            claims = jwt.decode(
                token,
                key=key,
                # The key's own algorithm only: a header naming another (RS256 for an Ed25519 key)
                # is refused by PyJWT instead of reaching the key as the wrong type (a TypeError).
                algorithms=[key.algorithm_name],
                audience=s.auth_audience,
                issuer=s.auth_issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The bearer token has expired; get a new one.") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized(f"The bearer token is not for audience {s.auth_audience!r}.") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized(f"The bearer token was not issued by {s.auth_issuer!r}.") from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            # Whatever a token makes the verification raise, it was not verified: a 401.
            raise Unauthorized(f"The bearer token is not valid: {exc}.") from None
        workspace = claims.get(s.auth_workspace_claim)
        if not isinstance(workspace, str) or not WORKSPACE_PATTERN.match(workspace):
            raise Unauthorized(
                f"The bearer token carries no valid {s.auth_workspace_claim!r} claim naming a workspace."
            )
        raw_scopes = claims.get("scope", "")
        scopes = raw_scopes.split() if isinstance(raw_scopes, str) else list(raw_scopes or [])
        caller = Caller(workspace_id=workspace, subject=str(claims["sub"]), scopes=frozenset(scopes))
        return caller, float(claims["exp"])

    async def _jwks_key(self, header: dict[str, Any]) -> jwt.PyJWK:
        assert self._jwks is not None
        kid = header.get("kid")
        return await self._jwks.get(kid if isinstance(kid, str) else None)

    async def _check_rate(self, per: str, *key: str) -> None:
        if not await self._limiter.hit(self._limit, *key):
            stats = await self._limiter.get_window_stats(self._limit, *key)
            retry = max(1, int(stats.reset_time - time.time()) + 1)
            raise TooManyRequests(
                f"Rate limit of {self._settings.rate_limit} {per} exceeded; retry in {retry} s.",
                headers={"Retry-After": str(retry)},
            )


_bearer = HTTPBearer(auto_error=False, description="A JWT from your OIDC issuer or `journeygraph token`.")


async def _caller(
    security: SecurityScopes,
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],  # documents the scheme
) -> Caller:
    caller: Caller | None = getattr(request.state, "caller", None)  # AuthenticateFirst's, under /v1
    if caller is None:
        verifier: TokenVerifier = request.app.state.verifier
        caller = request.state.caller = await verifier.authenticate(request)
    missing = [s for s in security.scopes if not caller.has(s)]
    if missing:
        raise Forbidden(
            f"This action needs the scope {' and '.join(missing)}; the token has "
            f"{' '.join(sorted(caller.scopes)) or 'none'}."
        )
    return caller


def caller_with(*scopes: str) -> Any:
    """`Annotated[Caller, caller_with("journeys:write")]` — authenticated, scoped, rate limited."""
    return Security(_caller, scopes=list(scopes))


class AuthenticateFirst:
    """Authenticates every request under `prefix` before routing, so before FastAPI reads and
    validates a body: an unauthenticated request with a broken body is a 401, not a 422 naming the
    fields. Scopes are the routes' (`caller_with`). Outside the exception handlers, so it answers
    its problems itself."""

    def __init__(self, app: ASGIApp, *, verifier: TokenVerifier, prefix: str = "/v1") -> None:
        self.app = app
        self.verifier = verifier
        self.prefix = prefix.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and (path == self.prefix or path.startswith(self.prefix + "/")):
            request = Request(scope)
            try:
                request.state.caller = await self.verifier.authenticate(request)
            except Problem as exc:
                response = problem_response(
                    exc.status, exc.detail, type_slug=exc.type_slug, instance=path, headers=exc.headers
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# Signing side: dev tokens (embedded mode) and test tokens.


def generate_signing_key() -> tuple[str, str]:
    """A fresh Ed25519 key pair as (private PEM, public PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def mint_token(
    private_key_pem: str,
    *,
    workspace: str,
    scopes: list[str],
    subject: str = "dev",
    ttl_seconds: int = 12 * 3600,
    issuer: str = "journeygraph-dev",
    audience: str = "journeygraph",
) -> str:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": now,
        "exp": now + ttl_seconds,
        "workspace": workspace,
        "scope": " ".join(scopes),
    }
    return jwt.encode(claims, private_key_pem, algorithm="EdDSA")
