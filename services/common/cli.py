"""`journeygraph`: the developer's command (up, token)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services.common.auth import SCOPES, mint_token
from services.common.runtime import Runtime, home_dir, load_or_create_keys

app = typer.Typer(help="journeygraph: customer journey management backend.", no_args_is_help=True)


@app.command()
def up(
    home: Annotated[
        Path | None, typer.Option(help="Data folder (default: $JOURNEYGRAPH_HOME or ./.journeygraph).")
    ] = None,
    demo: Annotated[bool, typer.Option(help="Load the demo workspace.")] = True,
) -> None:
    """Start embedded PostgreSQL and NATS, every service, and load the demo workspace."""
    Runtime(home or home_dir()).run(load_demo=demo)


@app.command()
def token(
    workspace: Annotated[str, typer.Option(help="Workspace the token is for.")] = "demo",
    scopes: Annotated[list[str] | None, typer.Option("--scopes", "-s", help=f"Any of: {', '.join(SCOPES)}.")] = None,
    subject: Annotated[str, typer.Option(help="Who the token speaks for.")] = "dev",
    hours: Annotated[int, typer.Option(help="Lifetime in hours.")] = 12,
    home: Annotated[Path | None, typer.Option(help="Data folder holding the dev signing key.")] = None,
) -> None:
    """Mint a dev token signed with the embedded runtime's key."""
    chosen = [s for arg in (scopes or ["admin"]) for s in arg.replace(",", " ").split()]
    unknown = sorted(set(chosen) - set(SCOPES))
    if unknown:
        raise typer.BadParameter(f"unknown scope(s) {', '.join(unknown)}; use {', '.join(SCOPES)}")
    private, _ = load_or_create_keys(home or home_dir())
    typer.echo(mint_token(private, workspace=workspace, scopes=chosen, subject=subject, ttl_seconds=hours * 3600))


if __name__ == "__main__":
    app()
