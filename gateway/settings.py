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
    # Limits on what one document may ask (checked before anything runs).
    max_depth: int = Field(default=12, ge=2, description="Deepest selection nesting.")
    max_aliases: int = Field(default=15, ge=0, description="Aliases per document.")
    max_tokens: int = Field(default=2_000, ge=100, description="Tokens per document.")
    production: bool = Field(default=False, description="Introspection and the GraphiQL page off.")
    otel_exporter_otlp_endpoint: str | None = None
    log_level: str = "INFO"
    log_json: bool = True
