"""The demo's names, apart from its pipeline so ``mlcycle --help`` imports nothing heavy."""

from __future__ import annotations

__all__ = ["DATASET", "EXPERIMENT", "MODEL", "SPLIT_DATE", "TIME_COLUMN"]

EXPERIMENT = "bike-demand"
"""The pipeline's name, so also the experiment its runs are recorded in."""
MODEL = "bike-demand"
DATASET = "bike"
TIME_COLUMN = "dteday"
SPLIT_DATE = "2012-09-01"
