"""``mlcycle db``: the metadata database itself."""

from __future__ import annotations

import typer

from mlcycle.cli._context import console, load, require_project

__all__ = ["app"]

app = typer.Typer(
    help="Manage the metadata database (SQLite or PostgreSQL).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Apply pending schema migrations.

    Opening a store does this too; upgrading keeps every stored record.
    """
    from sqlalchemy.engine import make_url

    from mlcycle.store import upgrade_metadata

    settings = load(ctx)
    require_project(settings)
    if settings.store.metadata_url is None:  # a fresh clone has mlcycle.toml but no .mlcycle/
        settings.workspace_dir.mkdir(parents=True, exist_ok=True)
    revision = upgrade_metadata(settings.metadata_url)
    shown = make_url(settings.metadata_url).render_as_string(hide_password=True)
    console().print(f"metadata store {shown} is at schema revision [bold]{revision}[/]")
