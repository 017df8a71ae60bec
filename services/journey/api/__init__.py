"""REST routes of the journey service, one module per area, joined into one router."""

from fastapi import APIRouter

from services.journey.api import analytics, customers, interactions, modelling

router = APIRouter()
router.include_router(modelling.router)
router.include_router(customers.router)
router.include_router(interactions.router)
router.include_router(analytics.router)
