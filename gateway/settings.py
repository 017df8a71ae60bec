from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import AuthSettings


class GatewaySettings(AuthSettings):
    """The gateway owns no data: it needs the services' base URLs, the token keys to know its caller
    (workspace and scopes), and NATS for the events its subscriptions relay."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")
    journey_url: str = "http://127.0.0.1:8001"
    feedback_url: str = "http://127.0.0.1:8002"
    scoring_url: str = "http://127.0.0.1:8003"
    nats_url: str = Field(description="NATS server with JetStream, e.g. nats://127.0.0.1:4222.")
    service_timeout_seconds: float = Field(default=10.0, gt=0, description="Longest wait for one service call.")
    # Subscriptions (gateway/live.py, gateway/events.py).
    max_subscriptions_per_connection: int = Field(
        default=20, ge=1, description="Operations running at once on one WebSocket; the one past it gets an error."
    )
    subscription_queue_size: int = Field(
        default=100, ge=1, description="Events waiting for one subscription; past it, it ends with an error."
    )
    # Limits on what one document may ask (checked before anything runs).
    max_depth: int = Field(default=12, ge=2, description="Deepest selection nesting.")
    max_aliases: int = Field(default=15, ge=0, description="Aliases per document.")
    max_tokens: int = Field(default=2_000, ge=100, description="Tokens per document.")
    max_cost: int = Field(
        default=200_000, ge=1, description="Fields a document may ask for, lists counted by their items (cost.py)."
    )
    assumed_list_size: int = Field(default=20, ge=1, description="Items counted for a list without `first`.")
    trusted_documents: str | None = Field(
        default=None, description="JSON file of trusted documents, sha256 hex -> document (persisted operations)."
    )
    trusted_documents_only: bool = Field(
        default=False, description="Run only the trusted documents, asked by their hash (production)."
    )
    response_cache_seconds: float = Field(
        default=5.0, ge=0, description="Longest a cached answer is served (cache.py); 0 turns the cache off."
    )
    response_cache_entries: int = Field(default=10_000, ge=1, description="Answers the cache keeps at most.")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="Largest request body.")
    fast_execution: bool = Field(
        default=True, description="Complete plain selections by projection (gateway/fast.py); off: graphql-core's."
    )
    production: bool = Field(default=False, description="Introspection, field suggestions and the GraphiQL page off.")
    otel_exporter_otlp_endpoint: str | None = None
    log_level: str = "INFO"
    log_json: bool = True
