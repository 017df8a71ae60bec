"""CSV and NDJSON history import: rows become ResponseCreate items or per-row errors."""

from __future__ import annotations

import csv
import io
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from services.feedback.models import SCALES, Question, QuestionType, ResponseCreate

MAX_IMPORT_ROWS = 100_000
_TRUE = {"true", "1", "yes", "y", "ja"}
_FALSE = {"false", "0", "no", "n", "nein"}


def _errors(exc: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]


def item_errors(item: Any, prefix: str) -> list[dict[str, str]]:
    """The schema errors of one item that did not validate, with paths under `prefix`."""
    try:
        ResponseCreate.model_validate(item)
    except ValidationError as exc:
        return [{"field": f"{prefix}.{e['field']}", "message": e["message"]} for e in _errors(exc)]
    return [{"field": prefix, "message": "not a valid response"}]


def parse_ndjson(body: bytes) -> list[ResponseCreate | list[dict[str, str]]]:
    out: list[ResponseCreate | list[dict[str, str]]] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(ResponseCreate.model_validate_json(line))
        except ValidationError as exc:
            out.append([{"field": f"line {number}.{e['field']}", "message": e["message"]} for e in _errors(exc)])
    return out


def _cell(question: Question | None, raw: str) -> Any:
    """A CSV cell as the JSON value the question expects (the survey check names what is still wrong)."""
    if question is None:
        return raw
    if question.type in SCALES:
        try:
            return int(raw)
        except ValueError:
            try:
                return float(raw)
            except ValueError:
                return raw
    if question.type == QuestionType.boolean:
        low = raw.strip().lower()
        return True if low in _TRUE else False if low in _FALSE else raw
    if question.type == QuestionType.multi_choice:
        return [v for v in raw.split("|") if v]
    return raw


def csv_surveys(body: bytes, default_survey: UUID | None) -> set[UUID]:
    reader = csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline=""))
    ids: set[UUID] = set()
    for row in reader:
        raw = row.get("survey_id") or (str(default_survey) if default_survey else None)
        try:
            if raw:
                ids.add(UUID(raw))
        except ValueError:
            continue
    return ids


def parse_csv(
    body: bytes, *, default_survey: UUID | None, questions: dict[UUID, list[Question]]
) -> list[ResponseCreate | list[dict[str, str]]]:
    """Columns: survey_id (or the query parameter), response_id, customer_external_id, journey_key, stage_key,
    touchpoint_key, channel, submitted_at, comment, language, `answers.<question>` and `metadata.<key>`."""
    reader = csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline=""))
    out: list[ResponseCreate | list[dict[str, str]]] = []
    for number, row in enumerate(reader, start=2):  # line 1 is the header
        item: dict[str, Any] = {"answers": {}, "metadata": {}}
        if default_survey is not None and not row.get("survey_id"):
            item["survey_id"] = str(default_survey)
        try:
            survey_questions = {q.key: q for q in questions.get(UUID(row.get("survey_id") or str(default_survey)), [])}
        except ValueError:
            survey_questions = {}
        for column, value in row.items():
            if column is None or value is None or value == "":
                continue
            if column.startswith("answers."):
                key = column.removeprefix("answers.")
                item["answers"][key] = _cell(survey_questions.get(key), value)
            elif column.startswith("metadata."):
                item["metadata"][column.removeprefix("metadata.")] = value
            else:
                item[column] = value
        try:
            out.append(ResponseCreate.model_validate(item))
        except ValidationError as exc:
            out.append([{"field": f"line {number}.{e['field']}", "message": e["message"]} for e in _errors(exc)])
    return out
