"""What runs log, in SQL: metric history, latest values, params and tags in one transaction.

Metric history lives in ``metric_chunks``, one row per run and key per write
with that write's points packed (ADR 0006); reading a history decodes every
chunk of the key and orders the points by step, then time, then write order.

``latest_metrics`` keeps, per run and key, the value with the greatest step and
then timestamp, so searches compare on one row per run instead of scanning the
history. It is maintained with an upsert whose ``WHERE`` only lets a newer
point replace the stored one, which stays right when batches arrive out of order.
Writing goes through ``_sql_batch``, like every other write of a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter

from sqlalchemy import Connection, select

from mlcycle.ids import RunId
from mlcycle.store._metric_chunks import unpack_points
from mlcycle.store._records import MetricPoint, RunValues, WriteBatch
from mlcycle.store._schema import metric_chunks
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
        """Every value logged for ``key``, ordered by step, then time, then write order."""
        query = (
            select(metric_chunks.c.data)
            .where(metric_chunks.c.run_id == run_id, metric_chunks.c.key == key)
            .order_by(metric_chunks.c.id)
        )

        def work(conn: Connection) -> list[bytes]:
            require_run(conn, run_id)
            return [bytes(data) for data in conn.execute(query).scalars()]

        points: list[tuple[int, float, float]] = []
        for data in self._db.read(work):
            steps, timestamps, values = unpack_points(data)
            points.extend(zip(steps, timestamps, values, strict=True))
        points.sort(key=_STEP_AND_TIME)  # stable: write order among equal steps and times
        return [MetricPoint(key, value, step, timestamp) for step, timestamp, value in points]


_STEP_AND_TIME = itemgetter(0, 1)
