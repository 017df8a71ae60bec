from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    """The gateway owns no data: it needs only the services' base URLs."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")
    journey_url: str = "http://127.0.0.1:8001"
    feedback_url: str = "http://127.0.0.1:8002"
    scoring_url: str = "http://127.0.0.1:8003"
    service_timeout_seconds: float = Field(default=10.0, gt=0, description="Longest wait for one service call.")
    log_level: str = "INFO"
    log_json: bool = True
