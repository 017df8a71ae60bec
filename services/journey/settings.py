from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class JourneySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="JOURNEY_", extra="ignore")
    service_name: str = "journey"
