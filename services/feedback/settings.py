from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class FeedbackSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FEEDBACK_", extra="ignore")
    service_name: str = "feedback"
    # Webhook delivery: retries with exponential backoff; defaults span about 5.7 hours.
    webhook_backoff_base_seconds: float = Field(default=5.0, gt=0)
    webhook_backoff_cap_seconds: float = Field(default=3 * 3600.0, gt=0)
    webhook_max_attempts: int = Field(default=12, ge=1, le=50)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Deliveries in flight per replica, and per subscription: a slow receiver holds only its own share.
    webhook_concurrency: int = Field(default=64, ge=1)
    webhook_subscription_concurrency: int = Field(default=8, ge=1)
