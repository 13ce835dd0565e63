"""What a monitor run reads and writes, handed over by the workspace (kept light to import)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlcycle.monitor._alerts import Alerts
    from mlcycle.registry import ModelRegistry
    from mlcycle.settings import MonitorSettings
    from mlcycle.store import DeploymentCatalog, MonitorResultLog, TableArea

__all__ = ["Sources"]


@dataclass(frozen=True)
class Sources:
    """Where a monitor run reads from and writes to (the workspace hands them over)."""

    spool_dir: Path
    tables: TableArea
    deployments: DeploymentCatalog
    results: MonitorResultLog
    registry: Callable[[], ModelRegistry]
    monitors: Mapping[str, MonitorSettings]
    alerts: Callable[[], Alerts] | None = None
