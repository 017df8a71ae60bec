from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class ScoringSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SCORING_", extra="ignore")
    service_name: str = "scoring"
    # A journey's scores are refreshed from its tallies this long after the first event that changed its
    # inputs (a burst of events costs one refresh): counts, reach, experience, health, quadrants.
    debounce_seconds: float = Field(default=0.25, ge=0, le=60)
    # Its models (effects, key drivers, attribution) are fitted again on every row this long after
    # the first event that changed them, in a lane of their own; structural changes, new settings,
    # `POST .../recompute` and a doubling of the customers since the last fit refit at once.
    refit_seconds: float = Field(default=30.0, ge=0, le=86_400)
    # A recompute that has not finished in this long is taken over by another replica.
    recompute_lease_seconds: float = Field(default=120.0, gt=0)
    bootstrap_replicates: int = Field(default=200, ge=20, le=2000, description="Resamples of every bootstrap interval.")
