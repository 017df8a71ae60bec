"""REST routes of the feedback service, one module per area, joined into one router."""

from fastapi import APIRouter

from services.feedback.api import comments, loop, metrics, responses, surveys, webhooks, workspace

router = APIRouter()
for module in (surveys, responses, metrics, comments, loop, webhooks, workspace):
    router.include_router(module.router)
