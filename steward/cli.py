"""The ``steward`` command line (Typer): the composition root wiring settings, storage and processes."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from core.logs import setup_logging
from core.settings import get_settings

app = typer.Typer(
    help="Steward 物业 platform: meters, equipment rooms, tickets, billing, access cards.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema and the embedded server.", no_args_is_help=True)
estate_app = typer.Typer(help="Estates: import from a YAML description.", no_args_is_help=True)
run_app = typer.Typer(help="Run one Steward process.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(estate_app, name="estate")
app.add_typer(run_app, name="run")

console = Console()
log = logging.getLogger("steward")


@app.callback()
def main() -> None:
    """Steward command line."""
    setup_logging(get_settings().log_level)


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT/SIGTERM, so every loop can finish its batch and exit cleanly."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the migrations (the only source of the schema)."""
    from storage.db import database_url
    from storage.migrate import upgrade

    upgrade(database_url(get_settings()), revision)
    console.print(f"[green]database upgraded to {revision}[/]")


@db_app.command("url")
def db_url() -> None:
    """Print the database URL in use (starting the embedded server if none is configured)."""
    from storage.db import database_url

    typer.echo(database_url(get_settings()))


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL server, if it runs."""
    from storage.embedded import stop_embedded_postgres

    stop_embedded_postgres(get_settings().data_dir)


@estate_app.command("import")
def estate_import(path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Create or update an estate from a YAML description (see examples/estate.yaml)."""
    from facility.importer import import_estate
    from protocol.estate_file import load_estate_file
    from storage.db import make_engine, make_sessionmaker, transaction

    doc = load_estate_file(path)
    engine = make_engine(get_settings())
    with transaction(make_sessionmaker(engine)) as session:
        summary = import_estate(session, doc)
    console.print(
        f"[green]estate {summary.estate}[/]: {summary.buildings} buildings, {summary.units} units, "
        f"{summary.rooms} rooms, {summary.devices} devices, {summary.points} points, {summary.residents} residents"
    )


@run_app.command("ingest")
def run_ingest_cmd() -> None:
    """Consume device messages from MQTT and store them exactly once."""
    from ingest.pipeline import run_ingest
    from storage.db import make_engine

    settings = get_settings()
    stop = stop_on_signals()
    run_ingest(settings, make_engine(settings), stop)
