"""What every command shares: the global options, the settings built from them, error display.

Kept free of heavy imports: ``mlcycle --help`` loads this module, so pandas,
SQLAlchemy and the SDK are imported inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from mlcycle.errors import MlcycleError, WorkspaceError

if TYPE_CHECKING:
    from rich.console import Console
    from typer._click.core import Context as _ClickContext  # Typer vendors click

    from mlcycle import Workspace
    from mlcycle.settings import Settings

__all__ = [
    "ErrorReportingGroup",
    "GlobalOptions",
    "console",
    "load",
    "open_workspace",
    "options",
    "print_error",
    "require_project",
]


PIPE_WIDTH = 200


@dataclass(frozen=True)
class GlobalOptions:
    """The root command's options, the strongest settings layer."""

    home: Path | None = None
    metadata_url: str | None = None
    artifacts_url: str | None = None

    def overrides(self) -> dict[str, Any]:  # Any: keyword arguments of Settings
        """Keyword arguments for ``load_settings``; only what was given on the command line."""
        store = {
            key: value
            for key, value in (
                ("metadata_url", self.metadata_url),
                ("artifacts_url", self.artifacts_url),
            )
            if value is not None
        }
        overrides: dict[str, Any] = {"store": store} if store else {}
        if self.home is not None:
            overrides["home"] = self.home.expanduser().resolve()
        return overrides


def options(ctx: typer.Context) -> GlobalOptions:
    """The global options given to the root command (defaults when run on its own)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def load(ctx: typer.Context) -> Settings:
    """Settings for the project found from the working directory, with the CLI flags on top."""
    from mlcycle.settings import load_settings

    return load_settings(**options(ctx).overrides())


def require_project(settings: Settings) -> None:
    """Refuse to read from a folder that is not a project, rather than creating one there."""
    from mlcycle.settings import CONFIG_FILE

    if settings.store.metadata_url is not None:
        return
    if (settings.home / CONFIG_FILE).is_file() or (settings.workspace_dir / "mlcycle.db").exists():
        return
    raise WorkspaceError(
        f"no mlcycle project at or above {settings.home} (no {CONFIG_FILE} found); "
        "run `mlcycle init` or `mlcycle demo` there first, or pass --home or --metadata-url"
    )


@contextmanager
def open_workspace(ctx: typer.Context, *, reap: bool = False) -> Iterator[Workspace]:
    """The workspace of the project the command runs in, closed afterwards.

    With ``reap``, runs whose process died (stale heartbeat) are marked killed
    first, so what the command shows is their true status.
    """
    from mlcycle import Workspace

    settings = load(ctx)
    require_project(settings)
    workspace = Workspace.open(settings)
    try:
        if reap:
            workspace.reap_stale_runs()
        yield workspace
    finally:
        workspace.close()


def console() -> Console:
    """Rich console on standard output."""
    import sys

    from rich.console import Console

    # Rich assumes 80 columns when output is not a terminal; a pipe or file has no
    # width, so tables are laid out wide rather than cut.
    return Console(highlight=False, width=None if sys.stdout.isatty() else PIPE_WIDTH)


def print_error(error: BaseException) -> None:
    """Print an error as one red ``error:`` line on stderr (continuation lines follow plain)."""
    from rich.console import Console
    from rich.text import Text

    lines = str(error).splitlines() or [type(error).__name__]
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    err.print(Text(f"error: {lines[0]}", style="bold red"))
    for line in lines[1:]:
        err.print(Text(line))


class ErrorReportingGroup(TyperGroup):
    """A command group that shows mlcycle's own errors as one line and exits with status 1."""

    def invoke(self, ctx: _ClickContext) -> Any:  # Any: whatever the command returns
        """Run the command; an ``MlcycleError`` becomes ``error: <message>`` and exit code 1."""
        try:
            return super().invoke(ctx)
        except MlcycleError as error:
            print_error(error)
            raise typer.Exit(1) from None
