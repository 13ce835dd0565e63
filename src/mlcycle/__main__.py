"""``python -m mlcycle``: the same command line as the ``mlcycle`` script."""

from __future__ import annotations

from mlcycle.cli import main

main()
