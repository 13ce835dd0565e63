"""``mlcycle init``: lay out a new project."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlcycle.cli._context import console, options

__all__ = ["init"]


def init(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Argument(
            help="Folder to lay the project out in; created if missing "
            "(default: --home, else the working directory).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Overwrite an existing mlcycle.toml with the defaults."),
    ] = False,
) -> None:
    """Lay out a new mlcycle project.

    Writes mlcycle.toml (every setting commented, with its default), the .mlcycle/
    workspace (database, artifacts, secrets; ignored by git) and the folders data/,
    pipelines/, schemas/, notebooks/ and tests/, each with a README.
    """
    from mlcycle.project import FOLDERS, init_project

    target = directory or options(ctx).home or Path.cwd()
    root = init_project(target, force=force)
    out = console()
    out.print(f"[green]Initialised an mlcycle project in[/] {root}")
    out.print("  mlcycle.toml     settings, commented, with their defaults (commit it)")
    out.print("  .mlcycle/        database, artifacts and secrets.toml (ignored by git)")
    for name in FOLDERS:
        out.print(f"  {name + '/':<16} see {name}/README.md")
    out.print("\nNext: [bold]mlcycle demo[/], then [bold]mlcycle runs list[/]")
