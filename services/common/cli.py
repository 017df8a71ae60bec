"""`journeygraph`: the developer's and operator's command (up, token, events)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar
from uuid import UUID

import orjson
import typer
from uvicorn.importer import import_from_string

from services.common.auth import SCOPES, mint_token
from services.common.consumer import Runner
from services.common.db import create_engine, create_sessionmaker
from services.common.dead_letters import list_dead_letters, replay_dead_letter
from services.common.runtime import (
    BASE_PORT,
    NATS_PORT,
    SERVICES,
    Runtime,
    home_dir,
    load_or_create_keys,
    signing_key_path,
)

app = typer.Typer(help="journeygraph: customer journey management backend.", no_args_is_help=True)
events = typer.Typer(
    help="A service's events: dead letters (list, replay) and consumers rebuilt from the stream. Run it "
    "with the service's environment (its <PREFIX>DATABASE_URL and NATS_URL), or against `make run`'s "
    "embedded servers when those are not set.",
    no_args_is_help=True,
)
app.add_typer(events, name="events")
T = TypeVar("T")
ServiceName = Annotated[str, typer.Argument(help=f"One of: {', '.join(s.name for s in SERVICES)}.")]


@app.command()
def up(
    home: Annotated[
        Path | None, typer.Option(help="Data folder (default: $JOURNEYGRAPH_HOME or ./.journeygraph).")
    ] = None,
    demo: Annotated[bool, typer.Option(help="Load the demo workspace.")] = True,
) -> None:
    """Start embedded PostgreSQL and NATS, every service, and load the demo workspace."""
    home = (home or home_dir()).resolve()
    with _announced(home):
        Runtime(home).run(load_demo=demo)


def _record() -> Path:
    """Where a running `journeygraph up` names its data folder (one file per base port, in the
    user's application folder), so a command run from another directory finds its key."""
    return Path(typer.get_app_dir("journeygraph")) / f"up-{BASE_PORT}.json"


def _running_home() -> Path | None:
    try:
        record = json.loads(_record().read_text())
        os.kill(record["pid"], 0)  # still running?
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Path(record["home"])


@contextmanager
def _announced(home: Path) -> Iterator[None]:
    if _running_home() is not None:  # another `up` holds these ports: the runtime will refuse to start
        yield
        return
    _record().parent.mkdir(parents=True, exist_ok=True)
    _record().write_text(json.dumps({"home": str(home), "pid": os.getpid()}))
    try:
        yield
    finally:
        _record().unlink(missing_ok=True)


def _stack_home(home: Path | None) -> Path:
    """The data folder whose key and servers a command uses: --home, else $JOURNEYGRAPH_HOME, else
    the running `journeygraph up`'s, else ./.journeygraph. It must hold a signing key: one made
    here would sign tokens no running service accepts."""
    if home is not None:
        where = f"{home.resolve()} (--home)"
    elif "JOURNEYGRAPH_HOME" in os.environ:
        home, where = home_dir(), f"{home_dir()} ($JOURNEYGRAPH_HOME)"
    elif (home := _running_home()) is not None:
        where = f"{home} (the running `journeygraph up` on port {BASE_PORT}, recorded in {_record()})"
    else:
        home = home_dir()
        where = f"{home} (the default: no `journeygraph up` on port {BASE_PORT} is recorded in {_record()})"
    if not signing_key_path(home.resolve()).exists():
        raise typer.BadParameter(
            f"no dev signing key in {where}. Start the stack with `make run` (it creates the key) or point "
            "--home or JOURNEYGRAPH_HOME at the data folder of the `journeygraph up` you run.",
            param_hint="--home",
        )
    return home.resolve()


@app.command()
def token(
    workspace: Annotated[str, typer.Option(help="Workspace the token is for.")] = "demo",
    scopes: Annotated[
        list[str] | None, typer.Option("--scopes", "-s", help=f"Any of: {', '.join(SCOPES)}.", show_default="admin")
    ] = None,
    subject: Annotated[str, typer.Option(help="Who the token speaks for.")] = "dev",
    hours: Annotated[int, typer.Option(min=1, help="Lifetime in hours.")] = 12,
    home: Annotated[
        Path | None,
        typer.Option(
            help="Data folder holding the dev signing key (default: $JOURNEYGRAPH_HOME, else the running "
            "`journeygraph up`'s, else ./.journeygraph)."
        ),
    ] = None,
) -> None:
    """Mint a dev token signed with the running stack's key."""
    chosen = [s for arg in (scopes or ["admin"]) for s in arg.replace(",", " ").split()]
    unknown = sorted(set(chosen) - set(SCOPES))
    if unknown:
        raise typer.BadParameter(f"unknown scope(s) {', '.join(unknown)}; use {', '.join(SCOPES)}")
    private, _ = load_or_create_keys(_stack_home(home))
    typer.echo(mint_token(private, workspace=workspace, scopes=chosen, subject=subject, ttl_seconds=hours * 3600))


def _with_service(name: str, home: Path | None, work: Callable[[Any, dict[str, Runner]], Awaitable[T]]) -> T:
    """Run `work(sessionmaker, runners)` against the service's database (its settings from the
    environment; `make run`'s embedded servers for what is not set)."""
    spec = next((s for s in SERVICES if s.name == name), None)
    if spec is None:
        raise typer.BadParameter(f"unknown service {name!r}; use {', '.join(s.name for s in SERVICES)}")
    prefix = spec.env_prefix
    if f"{prefix}DATABASE_URL" not in os.environ:  # not run in the service's environment: `make run`'s
        home = _stack_home(home)
        os.environ[f"{prefix}DATABASE_URL"] = f"postgresql+asyncpg://postgres@/journeygraph_{name}?host={home / 'pg'}"
        os.environ.setdefault(f"{prefix}NATS_URL", f"nats://127.0.0.1:{NATS_PORT}")
        os.environ.setdefault(f"{prefix}AUTH_PUBLIC_KEY", load_or_create_keys(home)[1])
    service = import_from_string(spec.app)()  # the app, not started: its settings and consumers

    async def run() -> T:
        engine = create_engine(service.state.settings.database_url, pool_size=2)
        sessionmaker = create_sessionmaker(engine)
        runners: dict[str, Runner] = service.state.runners
        for runner in runners.values():
            runner.bind(sessionmaker)
        try:
            return await work(sessionmaker, runners)
        finally:
            await engine.dispose()

    return asyncio.run(run())


HomeOption = Annotated[Path | None, typer.Option(help="`make run`'s data folder, for its embedded servers.")]


@events.command("dead-letters")
def show_dead_letters(
    service: ServiceName,
    workspace: Annotated[str | None, typer.Option(help="Only this workspace's.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
    home: HomeOption = None,
) -> None:
    """List parked events (oldest first), one JSON object per line."""

    async def work(sessionmaker: Any, runners: dict[str, Runner]) -> None:
        async with sessionmaker() as session:
            page = await list_dead_letters(session, workspace_id=workspace, consumer=None, cursor=None, limit=limit)
        for item in page.items:
            typer.echo(orjson.dumps(item.model_dump(mode="json", exclude={"event"})).decode())

    _with_service(service, home, work)


@events.command("replay")
def replay_dead_letters(
    service: ServiceName,
    ids: Annotated[list[UUID], typer.Argument(help="Dead letter ids.")],
    home: HomeOption = None,
) -> None:
    """Publish or apply parked events again (each removed once it succeeds)."""

    async def work(sessionmaker: Any, runners: dict[str, Runner]) -> None:
        for dead_letter_id in ids:
            done = await replay_dead_letter(sessionmaker, runners, dead_letter_id=dead_letter_id, workspace_id=None)
            typer.echo(f"{done.id}: replayed to the {done.replayed_to}")

    _with_service(service, home, work)


@events.command("rebuild")
def rebuild_consumer(
    service: ServiceName,
    consumer: Annotated[str, typer.Argument(help="The consumer whose projection to rebuild.")],
    home: HomeOption = None,
) -> None:
    """Empty a consumer's projection and apply its stream again from the start (the service may run)."""
    import nats

    async def work(sessionmaker: Any, runners: dict[str, Runner]) -> None:
        runner = runners.get(consumer)
        if runner is None:
            raise typer.BadParameter(f"no consumer {consumer!r}; this service has {', '.join(sorted(runners))}")
        nc = await nats.connect(os.environ[f"{next(s for s in SERVICES if s.name == service).env_prefix}NATS_URL"])
        try:
            applied = await runner.replay(nc)
        finally:
            await nc.close()
        typer.echo(f"{consumer}: {applied} events applied from the start of the stream")

    _with_service(service, home, work)


if __name__ == "__main__":
    app()
