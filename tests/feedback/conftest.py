from __future__ import annotations

import httpx
import pytest

from tests.conftest import Keys
from tests.feedback.factories import FeedbackApi


@pytest.fixture
def api(feedback_http: httpx.AsyncClient, keys: Keys, workspace: str) -> FeedbackApi:
    return FeedbackApi(feedback_http, keys, workspace)
