from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class ScoringSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SCORING_", extra="ignore")
    service_name: str = "scoring"
    # A journey's scores are recomputed this long after the first event that changed its inputs: a burst
    # of events costs one recompute. Every recompute is a full one (load + fit), so a score follows its
    # events after about debounce + 1.5 recomputes (`make bench`: ~1.5 s at 20,000 customers).
    debounce_seconds: float = Field(default=0.25, ge=0, le=60)
    # A recompute that has not finished in this long is taken over by another replica.
    recompute_lease_seconds: float = Field(default=120.0, gt=0)
    bootstrap_replicates: int = Field(default=200, ge=20, le=2000, description="Resamples of every bootstrap interval.")
