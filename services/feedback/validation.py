"""Answers checked against one survey version; every wrong answer is named."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.feedback.models import SCALES, Question, QuestionType

MAX_TEXT = 5000


@dataclass(frozen=True, slots=True)
class Scores:
    nps: int | None
    csat: int | None
    ces: int | None


def _describe(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check(question: Question, value: Any) -> str | None:
    """The problem with one answer, or None."""
    qt = question.type
    if qt in SCALES:
        low, high = SCALES[qt]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{_describe(value)} is not a number; expected a whole number from {low} to {high}"
        if isinstance(value, float) and not value.is_integer():
            return f"{_describe(value)} is not a whole number; expected {low} to {high}"
        if value > high:
            return f"{_describe(value)} is above the maximum {high}"
        if value < low:
            return f"{_describe(value)} is below the minimum {low}"
        return None
    if qt == QuestionType.text:
        if not isinstance(value, str):
            return f"{_describe(value)} is not text"
        if len(value) > MAX_TEXT:
            return f"the text has {len(value)} characters; at most {MAX_TEXT} are allowed"
        return None
    if qt == QuestionType.boolean:
        return None if isinstance(value, bool) else f"{_describe(value)} is not true or false"
    options = [o.key for o in question.options]
    if qt == QuestionType.single_choice:
        if not isinstance(value, str) or value not in options:
            return f"{_describe(value)} is not one of the options {', '.join(options)}"
        return None
    # multi_choice
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return f"{_describe(value)} is not a list of option keys"
    unknown = [v for v in value if v not in options]
    if unknown:
        return f"{', '.join(repr(v) for v in unknown)} {'is' if len(unknown) == 1 else 'are'} not among the options"
    if len(set(value)) != len(value):
        return "an option is chosen twice"
    return None


def validate_answers(
    questions: list[Question], answers: dict[str, Any], *, prefix: str = "answers"
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """(errors, normalised answers). Numbers on a scale are stored as ints."""
    by_key = {q.key: q for q in questions}
    errors: list[dict[str, str]] = []
    clean: dict[str, Any] = {}
    for key, value in answers.items():
        question = by_key.get(key)
        if question is None:
            errors.append({"field": f"{prefix}.{key}", "message": f"the survey has no question {key!r}"})
            continue
        if value is None:
            if question.required:
                errors.append({"field": f"{prefix}.{key}", "message": "an answer is required"})
            continue
        problem = _check(question, value)
        if problem is not None:
            errors.append({"field": f"{prefix}.{key}", "message": problem})
        else:
            clean[key] = int(value) if question.type in SCALES else value
    for question in questions:
        if question.required and question.key not in answers:
            errors.append({"field": f"{prefix}.{question.key}", "message": "an answer is required"})
    return errors, clean


def scores_of(questions: list[Question], answers: dict[str, Any]) -> Scores:
    """The first NPS, rating and CES answers: the values the metrics use."""
    found: dict[QuestionType, int] = {}
    for q in questions:
        if q.type in SCALES and q.type not in found and q.key in answers:
            found[q.type] = int(answers[q.key])
    return Scores(found.get(QuestionType.nps), found.get(QuestionType.rating), found.get(QuestionType.ces))
