"""Experiment tracking: runs that log metrics, params, tags and artifacts without waiting.

A ``Tracker`` holds what tracking works with (stores, clock, settings, actor);
the workspace builds it. ``ActiveRun`` is what a training loop logs into.
"""

from __future__ import annotations

from mlcycle.track._environment import GitState, capture_environment, git_state
from mlcycle.track._redact import REDACTED, is_secret_name, redact_argv, redact_mapping, redact_text
from mlcycle.track._runs import ActiveRun, current_run
from mlcycle.track._search import BASE_COLUMNS, RunView, runs_frame
from mlcycle.track._seed import seed_everything
from mlcycle.track._split import SPLIT_TAG, Split
from mlcycle.track._tracker import DEFAULT_EXPERIMENT, Tracker
from mlcycle.track._writer import BatchWriter

__all__ = [
    "BASE_COLUMNS",
    "DEFAULT_EXPERIMENT",
    "REDACTED",
    "SPLIT_TAG",
    "ActiveRun",
    "BatchWriter",
    "GitState",
    "RunView",
    "Split",
    "Tracker",
    "capture_environment",
    "current_run",
    "git_state",
    "is_secret_name",
    "redact_argv",
    "redact_mapping",
    "redact_text",
    "runs_frame",
    "seed_everything",
]
