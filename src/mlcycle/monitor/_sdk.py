"""``mc.monitor.reference(...)``: monitoring on the working directory's workspace.

The workspace sits above ``monitor`` in the layers, so these functions reach it
by name when called (``importlib``), never by an import at module level.
"""

from __future__ import annotations

import importlib

from mlcycle.monitor._reference import ReferenceStats

__all__ = ["reference"]


def reference(ref: str, *, exact: bool = True) -> ReferenceStats:
    """The cached reference statistics of dataset version ``ref`` (see ``Monitor.reference``)."""
    root = importlib.import_module("mlcycle")
    found: ReferenceStats = root.current_workspace().monitor.reference(ref, exact=exact)
    return found
