"""The mlcycle command line (Typer + Rich); heavy imports happen inside each command."""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    """Run the mlcycle command line."""
    from mlcycle.cli._app import app

    app(prog_name="mlcycle")
