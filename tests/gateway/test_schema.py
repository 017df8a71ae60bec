"""The exported SDL is the contract: the schema breaks nothing in it, and it is up to date."""

from __future__ import annotations

from graphql import build_schema, find_breaking_changes

from gateway.export import SDL_PATH, sdl
from gateway.graph import schema


def test_the_schema_breaks_nothing_of_the_exported_one() -> None:
    exported = build_schema(SDL_PATH.read_text())
    breaking = find_breaking_changes(exported, schema._schema)
    assert breaking == [], (
        f"breaking changes of the GraphQL schema: {[c.description for c in breaking]}; if they are on purpose, "
        "export it again (python -m gateway.export) and say so in the change"
    )


def test_the_exported_schema_is_up_to_date() -> None:
    assert SDL_PATH.read_text() == sdl(), "the schema changed: export it again (python -m gateway.export)"


def test_the_breaking_change_finder_sees_a_removed_field() -> None:
    """The check above can fail: a field taken away is a breaking change."""
    narrower = build_schema(sdl().replace("  reachN: Int!\n", ""))
    assert [c.description for c in find_breaking_changes(schema._schema, narrower)] == [
        "Field TouchpointScore.reachN was removed."
    ]
