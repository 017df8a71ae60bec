"""`python -m gateway.export`: write the schema's SDL to gateway/schema.graphql, the contract front
ends build on (tests/gateway/test_schema.py fails on a breaking change not exported on purpose)."""

from __future__ import annotations

from pathlib import Path

from gateway.graph import schema

SDL_PATH = Path(__file__).with_name("schema.graphql")


def sdl() -> str:
    return schema.as_str() + "\n"


if __name__ == "__main__":
    SDL_PATH.write_text(sdl())
    print(f"wrote {SDL_PATH}")
