"""Monitor results in SQL (the ``MonitorResultLog``): a long time series of window metrics.

A window's metrics commit together in one bulk insert, or not at all, so a
window is either fully stored or absent; the primary key (deployment, window,
metric) makes a second store of the same window a no-op that reports
``False``, which is what keeps ``ws.monitor.run`` idempotent across processes.
NaN is stored as NULL (SQLite turns it into NULL anyway); infinities as they are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, insert, select
from sqlalchemy.exc import IntegrityError

from mlcycle.errors import ValidationFailed
from mlcycle.store._records import MonitorPoint
from mlcycle.store._schema import monitor_results
from mlcycle.store._sql_db import Database, from_epoch, to_epoch
from mlcycle.store._sql_deployments import check_deployment_name

__all__ = ["MAX_METRIC_NAME", "MonitorResultsMixin"]

MAX_METRIC_NAME = 512


class MonitorResultsMixin:
    """The ``MonitorResultLog`` half of the SQL store."""

    _db: Database

    def record_monitor_window(
        self,
        deployment: str,
        *,
        window_start: datetime,
        window_end: datetime,
        values: Mapping[str, float | None],
        recorded_at: datetime,
    ) -> bool:
        """Store one window's metrics at once; ``False`` when the window was stored already."""
        check_deployment_name(deployment)
        if window_end <= window_start:
            raise ValidationFailed(
                f"window [{window_start}, {window_end}) of '{deployment}' ends before it starts"
            )
        start, end, now = to_epoch(window_start), to_epoch(window_end), to_epoch(recorded_at)
        rows = [
            {
                "deployment": deployment,
                "window_start": start,
                "window_end": end,
                "metric": _checked(metric, deployment),
                "value": _stored(value),
                "recorded_at": now,
            }
            for metric, value in values.items()
        ]
        if not rows:
            raise ValidationFailed(f"window ending {window_end} of '{deployment}' has no metrics")

        def work(conn: Connection) -> bool:
            key = and_(
                monitor_results.c.deployment == deployment,
                monitor_results.c.window_end == end,
                monitor_results.c.window_start == start,
            )
            if conn.execute(select(exists().where(key))).scalar_one():
                return False
            conn.execute(insert(monitor_results), rows)
            return True

        try:
            return self._db.write(work)
        except IntegrityError:  # another process stored the same window meanwhile
            return False

    def monitor_windows(
        self,
        deployment: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[tuple[datetime, datetime]]:
        """The stored windows ``(start, end)`` of ``deployment`` ending in ``(since, until]``."""
        table = monitor_results.c
        query = (
            select(table.window_start, table.window_end)
            .where(*_range(deployment, since, until))
            .distinct()
            .order_by(table.window_end, table.window_start)
        )
        found = self._db.read(lambda conn: conn.execute(query).all())
        return [(from_epoch(row.window_start), from_epoch(row.window_end)) for row in found]

    def monitored_deployments(self) -> list[str]:
        """The deployments with stored results, by name."""
        query = (
            select(monitor_results.c.deployment).distinct().order_by(monitor_results.c.deployment)
        )
        return list(self._db.read(lambda conn: conn.execute(query).scalars().all()))

    def read_monitor_results(
        self,
        deployment: str,
        *,
        metrics: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[MonitorPoint]:
        """Stored metrics of windows ending in ``(since, until]``, oldest window first."""
        table = monitor_results.c
        conditions = _range(deployment, since, until)
        if metrics is not None:
            conditions.append(table.metric.in_(list(metrics)))
        query = (
            select(table.window_start, table.window_end, table.metric, table.value)
            .where(*conditions)
            .order_by(table.window_end, table.window_start, table.metric)
        )
        found = self._db.read(lambda conn: conn.execute(query).all())
        return [
            MonitorPoint(
                window_start=from_epoch(row.window_start),
                window_end=from_epoch(row.window_end),
                metric=row.metric,
                value=None if row.value is None else float(row.value),
            )
            for row in found
        ]


def _range(deployment: str, since: datetime | None, until: datetime | None) -> list[Any]:
    conditions: list[Any] = [monitor_results.c.deployment == check_deployment_name(deployment)]
    if since is not None:
        conditions.append(monitor_results.c.window_end > to_epoch(since))
    if until is not None:
        conditions.append(monitor_results.c.window_end <= to_epoch(until))
    return conditions


def _checked(metric: str, deployment: str) -> str:
    bad = not isinstance(metric, str) or not metric or len(metric) > MAX_METRIC_NAME
    if bad or not metric.isprintable():
        raise ValidationFailed(
            f"monitor metric name {metric!r} of '{deployment}' must be a string of 1 to "
            f"{MAX_METRIC_NAME} printable characters"
        )
    return metric


def _stored(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationFailed(f"monitor metric values are numbers or None, not {value!r}")
    return None if math.isnan(value) else float(value)
