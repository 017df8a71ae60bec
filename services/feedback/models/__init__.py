"""Tables of the feedback service and their request / response shapes, one module per area."""

from services.common.vocabulary import Channel
from services.feedback.models._base import FeedbackTable
from services.feedback.models.loop import *  # noqa: F403
from services.feedback.models.responses import *  # noqa: F403
from services.feedback.models.surveys import *  # noqa: F403
from services.feedback.models.webhooks import *  # noqa: F403
from services.feedback.models.workspace import *  # noqa: F403

__all__ = ["Channel", "FeedbackTable"]
from services.feedback.models.metrics import *  # noqa: F403
