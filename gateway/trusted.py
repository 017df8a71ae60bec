"""Trusted documents (persisted operations): a manifest of the documents the front ends were built
with, each under the sha256 of its text. A client asks for one by its hash, in the
`extensions.persistedQuery.sha256Hash` of its request (Apollo's and urql's convention); with
`GATEWAY_TRUSTED_DOCUMENTS_ONLY` the gateway runs nothing else, so a stolen token cannot run
documents of its own making. Strawberry hands the request's extensions over but keeps no manifest,
so the lookup is written here."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
from cross_web import HTTPException
from strawberry.http import GraphQLRequestData


def document_hash(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()


class TrustedDocuments:
    def __init__(self, documents: dict[str, str], *, only: bool) -> None:
        wrong = [h for h, document in documents.items() if document_hash(document) != h]
        if wrong:
            raise ValueError(f"trusted documents whose key is not the sha256 of their text: {wrong}")
        self.documents, self.only = documents, only

    @classmethod
    def load(cls, path: str | None, *, only: bool) -> TrustedDocuments:
        if path is None and only:
            raise ValueError("GATEWAY_TRUSTED_DOCUMENTS_ONLY needs GATEWAY_TRUSTED_DOCUMENTS (the manifest)")
        return cls(orjson.loads(Path(path).read_bytes()) if path else {}, only=only)

    def resolve(self, request: GraphQLRequestData) -> None:
        """Put the trusted document in place of its hash; refuse what is not trusted when only those run."""
        asked = (request.extensions or {}).get("persistedQuery")
        if isinstance(asked, dict) and isinstance(asked.get("sha256Hash"), str):
            document = self.documents.get(asked["sha256Hash"])
            if document is None:
                raise HTTPException(400, "PersistedQueryNotFound: no trusted document has this sha256Hash.")
            if request.query is not None and request.query != document:
                raise HTTPException(400, "The query differs from the trusted document of its sha256Hash.")
            request.query = document
        elif self.only and (request.query is None or document_hash(request.query) not in self.documents):
            raise HTTPException(
                400,
                "Only trusted documents run here: send `extensions.persistedQuery.sha256Hash` of a document "
                "in the gateway's manifest.",
            )
