"""Settings shared by every service; each service subclasses with its own env prefix."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AuthSettings(BaseSettings):
    """How tokens are verified and callers rate limited: by every service, and by the gateway."""

    model_config = SettingsConfigDict(extra="ignore")

    # Auth: either a JWKS URL (OIDC) or a PEM public key (embedded mode). Neither has a default:
    # a service that cannot verify tokens refuses to start.
    auth_jwks_url: str | None = None
    auth_public_key: str | None = Field(default=None, description="PEM public key (EdDSA/RS256/ES256).")
    auth_issuer: str = "journeygraph-dev"
    auth_audience: str = "journeygraph"
    auth_algorithms: list[str] = ["EdDSA", "RS256", "ES256"]
    auth_workspace_claim: str = "workspace"
    auth_jwks_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Longest wait for the JWKS endpoint; then 503 with Retry-After."
    )
    # Limits.
    rate_limit: str = Field(default="1200/minute", description="Per token, `limits` notation.")
    rate_limit_storage_uri: str = Field(default="async+memory://", description="`limits` storage.")

    @model_validator(mode="after")
    def _require_token_keys(self) -> AuthSettings:
        if not self.auth_jwks_url and not self.auth_public_key:
            raise ValueError(
                "set AUTH_JWKS_URL (OIDC) or AUTH_PUBLIC_KEY (PEM) with this service's prefix: "
                "a service that cannot verify tokens does not start"
            )
        return self


class ServiceSettings(AuthSettings):
    """Configuration of one service, read only from the environment (prefix set per service)."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = Field(
        description="SQLAlchemy URL of this service's own database (postgresql+asyncpg://...).",
    )
    database_pool_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Longest wait for a pooled connection; then 503 with Retry-After."
    )
    nats_url: str = Field(description="NATS server with JetStream, e.g. nats://127.0.0.1:4222.")
    migrate_on_start: bool = Field(default=True, description="Apply the Alembic history on start.")
    max_body_bytes: int = 16 * 1024 * 1024
    # Events.
    outbox_poll_seconds: float = 1.0
    outbox_max_attempts: int = Field(default=5, description="Failed publishes before a row is parked.")
    consumer_max_attempts: int = 8
    outbox_publish_timeout_seconds: float = Field(
        default=10.0, gt=0, description="A batch not acknowledged this long is rolled back and retried."
    )
    outbox_stall_seconds: float = Field(
        default=60.0, gt=0, description="/readyz reports the outbox as not draining past this backlog age."
    )
    consumer_ack_wait_seconds: float = Field(
        default=10.0, gt=0, description="Redelivery after this long without news (a crashed replica's events)."
    )
    consumer_batch_size: int = Field(default=200, description="Most events one consumer transaction applies.")
    worker_poll_seconds: float = Field(default=1.0, gt=0, description="Background workers' idle poll interval.")
    stream_max_age_days: int = 0  # 0: keep every event, so read models can replay from the start
    # Idempotency keys live at least this long.
    idempotency_ttl_hours: int = 48
    # Observability.
    log_level: str = "INFO"
    log_json: bool = True
    otel_exporter_otlp_endpoint: str | None = None
    service_name: str = "journeygraph"
