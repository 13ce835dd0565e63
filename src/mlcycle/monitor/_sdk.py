"""``mc.monitor.run(...)``, ``results``, ``report``, ``reference``: on the cwd's workspace.

The workspace sits above ``monitor`` in the layers, so these functions reach it
by name when called (``importlib``), never by an import at module level.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.monitor._reference import ReferenceStats

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from mlcycle.monitor._window import WindowResult

__all__ = ["age_quality", "reference", "report", "results", "run"]


def _monitor() -> Any:  # Any: the workspace's Monitor, reached by name (layers)
    return importlib.import_module("mlcycle").current_workspace().monitor


def reference(ref: str, *, exact: bool = True) -> ReferenceStats:
    """The cached reference statistics of dataset version ``ref`` (see ``Monitor.reference``)."""
    found: ReferenceStats = _monitor().reference(ref, exact=exact)
    return found


def run(
    deployment: str,
    *,
    window: str | None = None,
    until: datetime | None = None,
    since: datetime | None = None,
) -> list[WindowResult]:
    """Score and store every complete unstored window of ``deployment`` (``Monitor.run``)."""
    found: list[WindowResult] = _monitor().run(deployment, window=window, until=until, since=since)
    return found


def results(
    deployment: str,
    *,
    metrics: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pd.DataFrame:
    """Stored monitor results in long format (``Monitor.results``)."""
    found: pd.DataFrame = _monitor().results(deployment, metrics=metrics, since=since, until=until)
    return found


def report(deployment: str, out_dir: str | Path = ".") -> Path:
    """Write the HTML and JSON monitoring report of ``deployment`` (``Monitor.report``)."""
    found: Path = _monitor().report(deployment, out_dir)
    return found


def age_quality(
    deployment: str, *, model: str | None = None, window: str | None = None
) -> pd.DataFrame:
    """Every registered version scored on the latest labelled window (``Monitor.age_quality``)."""
    found: pd.DataFrame = _monitor().age_quality(deployment, model=model, window=window)
    return found
