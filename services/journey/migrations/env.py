from services.common.migrations import run_env
from services.journey.models import JourneyTable

run_env(JourneyTable.metadata)
