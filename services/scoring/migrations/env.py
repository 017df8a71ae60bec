from services.common.migrations import run_env
from services.scoring.tables import METADATA

run_env(METADATA)
