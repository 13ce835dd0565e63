"""The root ``mlcycle`` command: global options, ``--version``, and the command groups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlcycle.cli import (
    _alerts,
    _data,
    _db,
    _demo,
    _deploy,
    _experiments,
    _init,
    _models,
    _monitor,
    _pipelines,
    _predict,
    _runs,
    _schedules,
    _serve,
    _training,
)
from mlcycle.cli._context import ErrorReportingGroup, GlobalOptions

__all__ = ["app"]

HELP = """\
mlcycle: the MLOps loop in one Python package. Today it versions, profiles
and validates datasets (Delta tables with schemas in the project) and tracks
experiments (runs, params, metrics, artifacts, environments, events and
lineage) in an embedded SQLite database, or PostgreSQL and S3 for a team.

Start here, from a clone of the repository:

\b
  make demo    versions and validates the bundled Bike Sharing data, then
               trains three models on it and tracks them
  make test    runs the whole test suite

In your own project: `mlcycle init`, `mlcycle demo`, then `mlcycle data show
bike` and `mlcycle runs list`.
"""

app = typer.Typer(
    name="mlcycle",
    help=HELP,
    cls=ErrorReportingGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: Rich's help renderer costs ~150 ms per --help
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(_experiments.app, name="experiments")
app.add_typer(_runs.app, name="runs")
app.add_typer(_data.app, name="data")
app.add_typer(_models.app, name="models")
app.add_typer(_pipelines.app, name="pipelines")
app.add_typer(_db.app, name="db")
app.add_typer(_schedules.app, name="schedules")
app.command("agent")(_schedules.agent)
app.command("deploy")(_deploy.deploy)
app.add_typer(_deploy.app, name="deployments")
app.add_typer(_alerts.app, name="alerts")
app.add_typer(_monitor.app, name="monitor")
app.add_typer(_training.app, name="training")
app.command("init")(_init.init)
app.command("demo")(_demo.demo)
app.command("serve")(_serve.serve)
app.command("predict")(_predict.predict)


def _show_version(value: bool) -> None:
    if value:
        from mlcycle import __version__

        typer.echo(f"mlcycle {__version__}")
        raise typer.Exit


@app.callback()
def root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Project root to work in (default: the nearest folder at or above the "
            "working directory that holds mlcycle.toml). Also MLCYCLE_HOME.",
            file_okay=False,
        ),
    ] = None,
    metadata_url: Annotated[
        str | None,
        typer.Option(
            "--metadata-url",
            help="SQLAlchemy URL of the metadata store, e.g. "
            "postgresql+psycopg://user@host/db (default: the project's .mlcycle/mlcycle.db).",
        ),
    ] = None,
    artifacts_url: Annotated[
        str | None,
        typer.Option(
            "--artifacts-url",
            help="Artifact store root: a folder or s3://bucket/prefix "
            "(default: the project's .mlcycle/artifacts).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Show the mlcycle version and exit.",
            callback=_show_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Settings come from mlcycle.toml, then MLCYCLE_* variables, then these options."""
    del version  # handled eagerly by its callback
    ctx.obj = GlobalOptions(home=home, metadata_url=metadata_url, artifacts_url=artifacts_url)
