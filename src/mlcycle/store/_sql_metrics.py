"""What runs log, in SQL: metric history, latest values, params and tags in one transaction.

``latest_metrics`` keeps, per run and key, the value with the greatest step and
then timestamp, so searches compare on one row per run instead of scanning the
history. It is maintained with an upsert whose ``WHERE`` only lets a newer
point replace the stored one, which stays right when batches arrive out of order.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Insert, and_, bindparam, insert, or_, select

from mlcycle.errors import ImmutableValue
from mlcycle.ids import RunId
from mlcycle.store._keys import check_key
from mlcycle.store._records import MetricPoint
from mlcycle.store._schema import latest_metrics, params, tags
from mlcycle.store._schema import metrics as metric_table
from mlcycle.store._sql_db import Database
from mlcycle.store._sql_events import require_run, upsert

__all__ = ["MetricsMixin"]


def _metric_rows(run_id: str, points: Sequence[MetricPoint]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for point in points:
        check_key(point.key, kind="metric")
        given: object = point.value  # callers may pass anything, despite the annotation
        if not isinstance(given, numbers.Real):
            raise TypeError(f"metric '{point.key}' must be a number, not {type(given).__name__}")
        step: object = point.step
        if not isinstance(step, numbers.Integral):
            raise TypeError(f"step of metric '{point.key}' must be an integer, not {point.step!r}")
        value = float(point.value)
        is_nan = math.isnan(value)
        rows.append(
            {
                "run_id": run_id,
                "key": point.key,
                "step": int(point.step),
                "timestamp": float(point.timestamp),
                "value": None if is_nan else value,
                "is_nan": is_nan,
            }
        )
    return rows


def _latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key: the greatest (step, timestamp), the later one on a tie."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        held = best.get(row["key"])
        if held is None or (row["step"], row["timestamp"]) >= (held["step"], held["timestamp"]):
            best[row["key"]] = row
    return list(best.values())


@functools.cache
def _latest_upsert(dialect: str) -> Insert:
    stmt = upsert(dialect, latest_metrics)
    new, old = stmt.excluded, latest_metrics.c
    newer = or_(new.step > old.step, and_(new.step == old.step, new.timestamp >= old.timestamp))
    return stmt.on_conflict_do_update(
        index_elements=[old.run_id, old.key],
        set_={name: new[name] for name in ("step", "timestamp", "value", "is_nan")},
        where=newer,
    )


@functools.cache
def _param_insert(dialect: str) -> Insert:
    return upsert(dialect, params).on_conflict_do_nothing()


@functools.cache
def _tag_upsert(dialect: str) -> Insert:
    stmt = upsert(dialect, tags)
    return stmt.on_conflict_do_update(
        index_elements=[tags.c.run_id, tags.c.key], set_={"value": stmt.excluded.value}
    )


_STORED_PARAMS = select(params.c.key, params.c.value).where(
    params.c.run_id == bindparam("run_id"), params.c.key.in_(bindparam("keys", expanding=True))
)
_INSERT_METRICS = insert(metric_table)


def _store_params(conn: Connection, run_id: str, given: dict[str, str]) -> None:
    """Insert new params; one logged before with another value is ``ImmutableValue``."""
    rows = [{"run_id": run_id, "key": key, "value": value} for key, value in given.items()]
    conn.execute(_param_insert(conn.dialect.name), rows)
    for key, value in conn.execute(_STORED_PARAMS, {"run_id": run_id, "keys": list(given)}):
        if value != given[key]:
            raise ImmutableValue(
                f"param '{key}' of run '{run_id}' is already {value!r}; it cannot become "
                f"{given[key]!r}. Params are immutable: log the new value under another "
                "key, or start a new run"
            )


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
        metric_rows = _metric_rows(run_id, metrics)
        param_values = {check_key(k, kind="param"): str(v) for k, v in (params or {}).items()}
        tag_values = {check_key(k, kind="tag"): str(v) for k, v in (tags or {}).items()}

        def work(conn: Connection) -> None:
            require_run(conn, run_id)
            if param_values:
                _store_params(conn, run_id, param_values)
            if tag_values:
                rows = [{"run_id": run_id, "key": k, "value": v} for k, v in tag_values.items()]
                conn.execute(_tag_upsert(conn.dialect.name), rows)
            if metric_rows:
                conn.execute(_INSERT_METRICS, metric_rows)
                conn.execute(_latest_upsert(conn.dialect.name), _latest(metric_rows))

        self._db.write(work)

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
