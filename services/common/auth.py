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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from services.common.errors import Forbidden, TooManyRequests, Unauthorized
from services.common.settings import ServiceSettings

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
    fetching is ours; parsing stays PyJWT's (PyJWKSet).
    """

    def __init__(self, url: str, *, min_refresh_seconds: float = 30.0) -> None:
        self._url = url
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._min_refresh = min_refresh_seconds
        self._lock = asyncio.Lock()

    async def get(self, kid: str | None) -> Any:
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched_at > self._min_refresh:
                async with httpx.AsyncClient(timeout=5) as client:
                    response = await client.get(self._url)
                    response.raise_for_status()
                jwks = jwt.PyJWKSet.from_dict(response.json())
                self._keys = {k.key_id: k.key for k in jwks.keys if k.key_id}
                if len(jwks.keys) == 1 and kid is None:
                    self._keys[None] = jwks.keys[0].key  # type: ignore[index]
                self._fetched_at = time.monotonic()
        if kid not in self._keys:
            raise Unauthorized(f"The token's signing key {kid!r} is not published by the issuer.")
        return self._keys[kid]


class TokenVerifier:
    def __init__(self, settings: ServiceSettings) -> None:
        self._settings = settings
        self._static_key = (
            serialization.load_pem_public_key(settings.auth_public_key.encode()) if settings.auth_public_key else None
        )
        self._jwks = _JwksKeys(settings.auth_jwks_url) if settings.auth_jwks_url else None
        self._limiter = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage_uri))
        self._limit = parse(settings.rate_limit)
        # A client sends the same token on every request until it expires: the signature check and
        # claim parsing are done once per token and minute (docs/engineering-notes.md has the cost).
        self._verified: TTLCache[str, tuple[Caller, float]] = TTLCache(maxsize=10_000, ttl=60)

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
            header = jwt.get_unverified_header(token)
            key = self._static_key if self._static_key is not None else await self._jwks_key(header)
            claims = jwt.decode(
                token,
                key=key,  # type: ignore[arg-type]
                algorithms=s.auth_algorithms,
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
        except jwt.PyJWTError as exc:
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

    async def _jwks_key(self, header: dict[str, Any]) -> Any:
        assert self._jwks is not None
        return await self._jwks.get(header.get("kid"))

    async def check_rate(self, caller: Caller) -> None:
        key = (caller.workspace_id, caller.subject)
        if not await self._limiter.hit(self._limit, *key):
            stats = await self._limiter.get_window_stats(self._limit, *key)
            retry = max(1, int(stats.reset_time - time.time()) + 1)
            raise TooManyRequests(
                f"Rate limit of {self._settings.rate_limit} per token exceeded; retry in {retry} s.",
                headers={"Retry-After": str(retry)},
            )


_bearer = HTTPBearer(auto_error=False, description="A JWT from your OIDC issuer or `journeygraph token`.")


async def _caller(
    security: SecurityScopes,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized(
            "Send `Authorization: Bearer <token>`; `journeygraph token` mints one for development.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    verifier: TokenVerifier = request.app.state.verifier
    caller = await verifier.verify(credentials.credentials)
    missing = [s for s in security.scopes if not caller.has(s)]
    if missing:
        raise Forbidden(
            f"This action needs the scope {' and '.join(missing)}; the token has "
            f"{' '.join(sorted(caller.scopes)) or 'none'}."
        )
    await verifier.check_rate(caller)
    request.state.caller = caller
    return caller


def caller_with(*scopes: str) -> Any:
    """`Annotated[Caller, caller_with("journeys:write")]` — authenticated, scoped, rate limited."""
    return Security(_caller, scopes=list(scopes))


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
