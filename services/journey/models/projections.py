"""Projections: derived data the `journey-analytics` consumer builds from the service's own events
(store/analytics/projection.py); a replay of the stream rebuilds them. Requests never write them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
import sqlmodel
from sqlalchemy.dialects.postgresql import JSONB

from services.journey.models._base import JourneyTable

UNTAGGED = UUID(int=0)  # journey_tag of interactions not tagged with a journey


class CustomerTouchpoint(JourneyTable, table=True):
    """That a customer met a touchpoint (per journey tag): one row per pair, whatever the number of
    interactions, from `journey.interaction.recorded`; reach over all time reads ~one row per
    customer and touchpoint instead of every event. First and last contact come from the
    interactions (customer DNA), not from here."""

    __tablename__ = "customer_touchpoint"
    # Key order: a journey's touchpoints are scanned in (touchpoint, customer) order, so distinct
    # customers per touchpoint need no sort or hash.
    workspace_id: str = sqlmodel.Field(primary_key=True)
    touchpoint_id: UUID = sqlmodel.Field(primary_key=True)
    customer_id: UUID = sqlmodel.Field(primary_key=True)
    journey_tag: UUID = sqlmodel.Field(primary_key=True, description="journey_id, or UNTAGGED")


class JourneyRollup(JourneyTable, table=True):
    """The state of one journey's `customer_journey` rows: the structure they were built with
    (`signature`, `stages`), whether that structure has changed since (`stale_since`: a rebuild is
    due, and answers are complete only up to then) and the journey version of the last structural
    event applied (`version`: an event not above it is dropped). Its row is the journey's lock:
    the consumer's refresh and the background rebuild of one journey run one at a time."""

    __tablename__ = "journey_rollup"
    __table_args__ = (
        sa.Index("ix_journey_rollup_stale", "stale_since", postgresql_where=sa.text("stale_since IS NOT NULL")),
    )
    journey_id: UUID = sqlmodel.Field(primary_key=True)
    workspace_id: str
    version: int = sqlmodel.Field(sa_type=sa.BigInteger)
    # md5 of the stages (id, key, position) and the (touchpoint, stage) memberships with the
    # touchpoints' keys: what the rows depend on; null: never built.
    signature: str | None = None
    stages: list[dict[str, Any]] | None = sqlmodel.Field(
        default=None, sa_type=JSONB, description="StageRef of each stage in order, as built"
    )
    stale_since: datetime | None = sqlmodel.Field(default=None, sa_type=sa.DateTime(timezone=True))
    built_at: datetime | None = sqlmodel.Field(default=None, sa_type=sa.DateTime(timezone=True))


class CustomerJourney(JourneyTable, table=True):
    """Per journey and customer: the funnel and path results of that one customer under the default
    parameters, and the customer's stage events for any other funnel, computed by the same SQL as
    the raw-event queries (store/analytics/rollup.py).

    Funnel and paths over a journey then read one row per customer instead of every event. The
    consumer recomputes the rows of the customers whose interactions it applies; a structural change
    of the journey has the whole journey rebuilt in the background (`journey_rollup`). No foreign
    key to `journey`: a deleted journey's rows go when its `journey.journey.deleted` is applied.
    """

    __tablename__ = "customer_journey"
    workspace_id: str = sqlmodel.Field(primary_key=True)
    journey_id: UUID = sqlmodel.Field(primary_key=True)
    customer_id: UUID = sqlmodel.Field(primary_key=True)
    # Time each stage (in stage order) was reached within the default window; null from the first
    # stage not reached. All null: the customer never met the first stage.
    funnel_first_stage: list[datetime | None] = sqlmodel.Field(
        sa_type=sa.ARRAY(sa.DateTime(timezone=True)), description="window counted from the first stage"
    )
    funnel_previous_stage: list[datetime | None] = sqlmodel.Field(
        sa_type=sa.ARRAY(sa.DateTime(timezone=True)), description="window counted from the previous stage"
    )
    entry_channel: str | None = None
    # Every event at the journey's stages, for funnels with a time range or another window: the
    # times of stage k (0 = the first), sorted, are stage_times[stage_bounds[k + 1] + 1 : stage_bounds[k + 2]].
    stage_times: list[datetime] = sqlmodel.Field(
        sa_type=sa.ARRAY(sa.DateTime(timezone=True)), description="per stage, its event times, sorted"
    )
    stage_bounds: list[int] = sqlmodel.Field(
        sa_type=sa.ARRAY(sa.Integer), description="where each stage's times start in stage_times"
    )
    # Paths, collapsed and cut at the longest max_length a request may ask for; `none` uncut, with
    # the time of each node in `<level>_times`, so a time range can be cut out of it.
    stages_none: list[str] = sqlmodel.Field(sa_type=sa.ARRAY(sa.Text))
    stages_repeats: list[str] = sqlmodel.Field(sa_type=sa.ARRAY(sa.Text))
    stages_revisits: list[str] = sqlmodel.Field(sa_type=sa.ARRAY(sa.Text))
    touchpoints_none: list[str] = sqlmodel.Field(sa_type=sa.ARRAY(sa.Text))
    touchpoints_repeats: list[str] = sqlmodel.Field(sa_type=sa.ARRAY(sa.Text))
    touchpoints_revisits: list[str] = sqlmodel.Field(sa_type=sa.ARRAY(sa.Text))
    stages_times: list[datetime] = sqlmodel.Field(sa_type=sa.ARRAY(sa.DateTime(timezone=True)))
    touchpoints_times: list[datetime] = sqlmodel.Field(sa_type=sa.ARRAY(sa.DateTime(timezone=True)))
