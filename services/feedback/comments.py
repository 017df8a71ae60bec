"""Comment analytics offline: sentiment (−1..1) and themes, German and English, computed after the write.

English sentiment is VADER (vaderSentiment ships its lexicon in the package). German uses the small
lexicon below (negation and boosters within a clause, scored like VADER's compound x / sqrt(x² + 15)).
textblob-de was checked here and does work offline (textblob==0.17.1 + PatternTokenizer), but it was
not adopted: its import (nltk) and its per-comment cost are high (docs/engineering-notes.md), it pins
an old textblob for the whole environment, and it scored "Alles bestens, sehr zufrieden!" as 0.0.
germansentiment downloads a model at run time, which cannot work here.
Themes come from a bilingual keyword lexicon matched on word prefixes.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import orjson
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # type: ignore[import-untyped]

from services.common.outbox import Change, emit_many
from services.common.worker import LoopWorker
from services.feedback.events import COMMENT_ANALYSED
from services.feedback.settings import FeedbackSettings
from services.feedback.store.responses import PUBLIC_COLUMNS, public_row

log = structlog.get_logger(__name__)
_vader = SentimentIntensityAnalyzer()
_WORD = re.compile(r"[a-zäöüß]+", re.IGNORECASE)
_CLAUSE = re.compile(r"[.,;:!?]+|\b(?:aber|jedoch|sondern)\b", re.IGNORECASE)

GERMAN_LEXICON: dict[str, float] = {
    **dict.fromkeys(["gut", "gute", "guter", "gutes", "prima", "toll", "super", "schnell", "freundlich"], 2.0),
    **dict.fromkeys(["hilfsbereit", "zufrieden", "einfach", "klar", "angenehm", "kompetent", "zuverlässig"], 2.0),
    **dict.fromkeys(["hervorragend", "ausgezeichnet", "perfekt", "begeistert", "großartig", "wunderbar"], 3.0),
    **dict.fromkeys(["danke", "empfehlen", "empfehlenswert", "gerne", "lob", "pünktlich", "günstig"], 1.5),
    **dict.fromkeys(["schlecht", "schlechte", "schlechter", "langsam", "unfreundlich", "teuer", "kompliziert"], -2.0),
    **dict.fromkeys(["ärgerlich", "enttäuscht", "enttäuschend", "unzufrieden", "falsch", "kaputt", "defekt"], -2.0),
    **dict.fromkeys(["katastrophe", "katastrophal", "furchtbar", "schrecklich", "miserabel", "unverschämt"], -3.0),
    **dict.fromkeys(["warten", "wartezeit", "verspätet", "verspätung", "problem", "probleme", "fehler"], -1.5),
    **dict.fromkeys(["nie", "beschwerde", "umständlich", "unklar", "chaos", "nervig", "mangelhaft"], -1.5),
}
GERMAN_NEGATIONS = {"nicht", "kein", "keine", "keinen", "keiner", "nie", "niemals", "ohne"}
GERMAN_BOOSTERS = {"sehr": 0.5, "extrem": 0.8, "total": 0.5, "wirklich": 0.3, "ziemlich": 0.2, "besonders": 0.4}
GERMAN_HINTS = {
    "und",
    "der",
    "die",
    "das",
    "ist",
    "nicht",
    "sehr",
    "ich",
    "war",
    "mit",
    "für",
    "auf",
    "zu",
    "es",
    "ein",
}
ENGLISH_HINTS = {"and", "the", "is", "not", "very", "i", "was", "with", "for", "on", "to", "it", "a", "of", "my"}

# theme -> word prefixes (English and German)
THEMES: dict[str, tuple[str, ...]] = {
    "price": ("price", "pric", "expensive", "cheap", "cost", "fee", "preis", "teuer", "günstig", "kosten", "gebühr"),
    "delivery": ("deliver", "shipping", "shipped", "parcel", "package", "liefer", "versand", "paket", "zustell"),
    "waiting_time": ("wait", "slow", "delay", "late", "queue", "hold", "warte", "langsam", "verspät", "dauer"),
    "staff": (
        "staff",
        "employee",
        "agent",
        "friendly",
        "rude",
        "helpful",
        "advisor",
        "mitarbeit",
        "freundlich",
        "unfreundlich",
        "berater",
        "personal",
        "hilfsbereit",
    ),
    "product_quality": (
        "quality",
        "broken",
        "defect",
        "damaged",
        "works",
        "qualität",
        "kaputt",
        "defekt",
        "mangel",
        "funktioniert",
    ),
    "website_app": ("website", "site", "app", "online", "login", "checkout", "webseite", "internetseite", "anmeld"),
    "billing": ("bill", "invoice", "charge", "payment", "refund", "rechnung", "abbuchung", "zahlung", "erstatt"),
    "communication": (
        "email",
        "call",
        "phone",
        "answer",
        "respon",
        "inform",
        "anruf",
        "telefon",
        "antwort",
        "rückmeld",
        "auskunft",
    ),
}


def detect_language(comment: str, hint: str | None) -> str:
    if hint:
        return hint.split("-")[0].lower()
    words = {w.lower() for w in _WORD.findall(comment)}
    if any(ch in comment for ch in "äöüß"):
        return "de"
    return "de" if len(words & GERMAN_HINTS) > len(words & ENGLISH_HINTS) else "en"


def _german_sentiment(comment: str) -> float:
    total = 0.0
    # Negation and boosters reach back up to three words, never across a clause boundary.
    for clause in _CLAUSE.split(comment):
        words = [w.lower() for w in _WORD.findall(clause)]
        for i, word in enumerate(words):
            value = GERMAN_LEXICON.get(word)
            if value is None:
                continue
            window = words[max(0, i - 3) : i]
            boost = sum(GERMAN_BOOSTERS.get(w, 0.0) for w in window)
            value = value + math.copysign(boost, value)
            if any(w in GERMAN_NEGATIONS for w in window) and word not in GERMAN_NEGATIONS:
                value = -0.74 * value  # VADER's negation factor
            total += value
    return total / math.sqrt(total * total + 15) if total else 0.0


def sentiment(comment: str, language: str) -> float:
    if language == "de":
        return round(_german_sentiment(comment), 4)
    return round(float(_vader.polarity_scores(comment)["compound"]), 4)


def themes(comment: str) -> list[str]:
    words = [w.lower() for w in _WORD.findall(comment)]
    found = [theme for theme, prefixes in THEMES.items() if any(w.startswith(prefixes) for w in words)]
    return sorted(found)


def analyse(comment: str, language_hint: str | None) -> tuple[str, float, list[str]]:
    language = detect_language(comment, language_hint)
    return language, sentiment(comment, language), themes(comment)


_PENDING = text(
    "SELECT id, workspace_id, comment, language FROM response WHERE analysed_at IS NULL ORDER BY created_at "
    "LIMIT :n FOR UPDATE SKIP LOCKED"
)
_STORE = text(
    "UPDATE response r SET sentiment = t.sentiment, themes = CAST(t.themes AS jsonb), analysed_at = :now "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:sentiments AS float8[]), CAST(:themes AS text[])) "
    "AS t(id, sentiment, themes) WHERE r.id = t.id "
    f"RETURNING r.workspace_id, {', '.join(f'r.{c}' for c in PUBLIC_COLUMNS)}"
)
_NOTHING_TO_ANALYSE = text("UPDATE response SET analysed_at = :now WHERE id = ANY(CAST(:ids AS uuid[]))")


class CommentAnalyser(LoopWorker):
    """Background task: analyses the comments of new responses in batches and publishes each result as
    `feedback.comment.analysed` (the response at version 2), which the cases projection checks
    against the theme rules."""

    name = "comment-analyser"

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], settings: FeedbackSettings, *, batch_size: int = 500
    ) -> None:
        super().__init__(idle_seconds=settings.worker_poll_seconds)
        self._sessionmaker = sessionmaker
        self._batch = batch_size

    async def run_once(self) -> bool:
        return await self.analyse_batch() == self._batch

    async def analyse_batch(self) -> int:
        now = datetime.now(UTC)
        async with self._sessionmaker() as session, session.begin():
            rows = (await session.execute(_PENDING, {"n": self._batch})).all()
            if not rows:
                return 0
            analysed = [
                (row, analyse(row.comment, row.language)) for row in rows if row.comment and row.comment.strip()
            ]
            blank = [row.id for row in rows if not (row.comment and row.comment.strip())]
            if blank:
                await session.execute(_NOTHING_TO_ANALYSE, {"ids": blank, "now": now})
            if analysed:
                stored = await session.execute(
                    _STORE,
                    {
                        "ids": [row.id for row, _ in analysed],
                        "sentiments": [score for _, (_, score, _) in analysed],
                        "themes": [orjson.dumps(found).decode() for _, (_, _, found) in analysed],
                        "now": now,
                    },
                )
                by_workspace: dict[str, list[Change]] = {}
                for r in sorted(stored, key=lambda r: (r.created_at, r.id)):  # in the order they were stored
                    response = public_row(r)
                    change = Change(COMMENT_ANALYSED, response, response["id"], 2)
                    by_workspace.setdefault(r.workspace_id, []).append(change)
                for workspace_id, changes in by_workspace.items():
                    await emit_many(session, workspace_id=workspace_id, changes=changes)
        return len(rows)
