"""REST routes of the journey service, one module per area, joined into one router."""

from fastapi import APIRouter

from services.journey.api import modelling

router = APIRouter()
router.include_router(modelling.router)
