from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class JourneySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="JOURNEY_", extra="ignore")
    service_name: str = "journey"
    worker_poll_seconds: float = Field(
        default=1.0, description="Idle poll of the background rebuild of journey projections (another replica's)."
    )
