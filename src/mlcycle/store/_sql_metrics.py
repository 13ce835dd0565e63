"""What runs log, in SQL: metric history, latest values, params and tags in one transaction.

``latest_metrics`` keeps, per run and key, the value with the greatest step and
then timestamp, so searches compare on one row per run instead of scanning the
history. It is maintained with an upsert whose ``WHERE`` only lets a newer
point replace the stored one, which stays right when batches arrive out of order.
Writing goes through ``_sql_batch``, like every other write of a run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sqlalchemy import Connection, select

from mlcycle.ids import RunId
from mlcycle.store._records import MetricPoint, RunValues, WriteBatch
from mlcycle.store._schema import metrics as metric_table
from mlcycle.store._sql_batch import prepare_batch, write_batch
from mlcycle.store._sql_db import Database
from mlcycle.store._sql_events import require_run

__all__ = ["MetricsMixin"]


class MetricsMixin:
    """``MetricLog`` in SQL."""

    _db: Database

    def log_batch(
        self,
        run_id: RunId,
        *,
        metrics: Sequence[MetricPoint] = (),
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Store a batch atomically; a param logged again with a new value is ``ImmutableValue``."""
        values = RunValues(run_id=run_id, metrics=metrics, params=params or {}, tags=tags or {})
        prepared = prepare_batch(WriteBatch([values]))
        self._db.write(lambda conn: write_batch(conn, prepared))

    def metric_history(self, run_id: RunId, key: str) -> list[MetricPoint]:
        """Every value logged for ``key``, ordered by step, then time."""
        history = metric_table
        query = (
            select(history.c.step, history.c.timestamp, history.c.value, history.c.is_nan)
            .where(history.c.run_id == run_id, history.c.key == key)
            .order_by(history.c.step, history.c.timestamp, history.c.id)
        )

        def work(conn: Connection) -> list[MetricPoint]:
            require_run(conn, run_id)
            return [
                MetricPoint(
                    key=key,
                    value=math.nan if is_nan else float(value),
                    step=int(step),
                    timestamp=float(timestamp),
                )
                for step, timestamp, value, is_nan in conn.execute(query)
            ]

        return self._db.read(work)
