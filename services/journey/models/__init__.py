"""Tables of the journey service and their Create / Update / Public shapes, one module per area."""

from services.journey.models._base import JourneyTable
from services.journey.models.analytics import *  # noqa: F403
from services.journey.models.customers import *  # noqa: F403
from services.journey.models.maps import *  # noqa: F403
from services.journey.models.modelling import *  # noqa: F403
from services.journey.models.projections import *  # noqa: F403

__all__ = ["JourneyTable"]
