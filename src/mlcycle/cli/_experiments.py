"""``mlcycle experiments``: the named groups runs belong to."""

from __future__ import annotations

import typer

from mlcycle.cli._context import console, open_workspace

__all__ = ["app"]

app = typer.Typer(
    help="List experiments (named groups of runs).", no_args_is_help=True, rich_markup_mode=None
)


@app.command("list")
def list_experiments(ctx: typer.Context) -> None:
    """List every experiment, oldest first."""
    from rich.table import Table

    with open_workspace(ctx) as workspace:
        experiments = workspace.list_experiments()
    table = Table("name", "id", "created", "actor", title="experiments")
    for experiment in experiments:
        table.add_row(
            experiment.name,
            experiment.id,
            f"{experiment.created_at:%Y-%m-%d %H:%M:%S}",
            experiment.actor,
        )
    out = console()
    if experiments:
        out.print(table)
    else:
        out.print("no experiments yet: run [bold]mlcycle demo[/] or track a run with the SDK")
