from services.common.migrations import run_env
from services.feedback.models import FeedbackTable

run_env(FeedbackTable.metadata)
