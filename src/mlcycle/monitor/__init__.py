"""Monitoring: drift of live data against a reference, prepared once and reused.

``mc.monitor.drift(reference_df, current_df)`` tests every column and returns a
:class:`DriftReport`; a :class:`ReferenceStats` (or a dataset reference such as
``"bike/3"``, cached in the artifact store) makes every later window cheap.
"""

from __future__ import annotations

from mlcycle.monitor._drift import DEFAULT_THRESHOLDS, TESTS, drift
from mlcycle.monitor._monitor import CACHE_KIND, Monitor
from mlcycle.monitor._reference import ColumnReference, ReferenceStats
from mlcycle.monitor._report import ColumnDrift, DriftReport, TestName
from mlcycle.monitor._sdk import reference

__all__ = [
    "CACHE_KIND",
    "DEFAULT_THRESHOLDS",
    "TESTS",
    "ColumnDrift",
    "ColumnReference",
    "DriftReport",
    "Monitor",
    "ReferenceStats",
    "TestName",
    "drift",
    "reference",
]
