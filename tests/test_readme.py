"""The README's configuration table names every setting, and its commands are the Makefile's."""

from __future__ import annotations

import re
from pathlib import Path

from services.common.demo import _activity
from services.common.settings import ServiceSettings
from services.feedback.settings import FeedbackSettings
from services.journey.settings import JourneySettings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    names = set(ServiceSettings.model_fields) | set(FeedbackSettings.model_fields) | set(JourneySettings.model_fields)
    missing = sorted(name for name in names if f"`{name.upper()}`" not in readme)
    assert missing == [], f"document these settings in README.md: {missing}"


def test_readme_commands_exist_in_the_makefile_and_ci() -> None:
    targets = set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), flags=re.MULTILINE))
    commands = set(re.findall(r"make ([a-z]+)", (ROOT / "README.md").read_text()))
    assert commands <= targets
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make lint" in ci
    assert "make test" in ci


def test_the_tour_counts_the_demos_customers() -> None:
    interactions, _, _ = _activity()
    customers = len({i["customer"] for i in interactions})
    said = re.findall(r"(\d+) customers'\s+interactions", (ROOT / "README.md").read_text())
    assert said == [str(customers)], f"the demo holds {customers} customers; README says {said}"
