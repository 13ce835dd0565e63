"""The mlcycle command line."""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    """Run the mlcycle command line."""
