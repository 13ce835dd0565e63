"""Metric history in chunks: one row per run and key per write, its points packed (ADR 0006).

Every run and key's rows of ``metrics`` move into ``metric_chunks``, in the
order they were written (at most ``_POINTS_PER_CHUNK`` points per chunk), then
``metrics`` is dropped. Downgrading expands the chunks back into rows. The
packing of format 1 is written out here rather than imported, so this revision
keeps producing format 1 whatever later versions of the store write.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.String(26)
_KEY = sa.String(250)
_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_POINTS_PER_CHUNK = 10_000
_ROWS_PER_INSERT = 1_000
_FORMAT = 1

_chunks = sa.table(
    "metric_chunks",
    sa.column("id", _SERIAL),
    sa.column("run_id", _ID),
    sa.column("key", _KEY),
    sa.column("count", sa.Integer()),
    sa.column("min_step", sa.BigInteger()),
    sa.column("max_step", sa.BigInteger()),
    sa.column("data", sa.LargeBinary()),
)
_metrics = sa.table(
    "metrics",
    sa.column("id", _SERIAL),
    sa.column("run_id", _ID),
    sa.column("key", _KEY),
    sa.column("step", sa.BigInteger()),
    sa.column("timestamp", sa.Float()),
    sa.column("value", sa.Float()),
    sa.column("is_nan", sa.Boolean()),
)


def _pack(steps: Sequence[int], times: Sequence[float], values: Sequence[float]) -> bytes:
    count = len(steps)
    return struct.pack(f"<B{count}q{count}d{count}d", _FORMAT, *steps, *times, *values)


def _unpack(data: bytes) -> Iterator[tuple[int, float, float]]:
    if data[0] != _FORMAT:
        raise RuntimeError(f"a metric history chunk has format {data[0]}, not {_FORMAT}")
    count = (len(data) - 1) // 24
    fields = struct.unpack(f"<B{count}q{count}d{count}d", data)
    return zip(
        fields[1 : count + 1],
        fields[count + 1 : 2 * count + 1],
        fields[2 * count + 1 :],
        strict=True,
    )


def upgrade() -> None:
    """Create ``metric_chunks``, move the history of ``metrics`` into it, drop ``metrics``."""
    op.create_table(
        "metric_chunks",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("key", _KEY, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("min_step", sa.BigInteger(), nullable=False),
        sa.Column("max_step", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_metric_chunks_run_id_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_metric_chunks"),
    )
    op.create_index("ix_metric_chunks_run_id_key", "metric_chunks", ["run_id", "key"])
    _move_rows_into_chunks(op.get_bind())
    op.drop_index("ix_metrics_run_id_key_step", table_name="metrics")
    op.drop_table("metrics")


def _move_rows_into_chunks(conn: sa.Connection) -> None:
    query = sa.select(
        _metrics.c.run_id,
        _metrics.c.key,
        _metrics.c.step,
        _metrics.c.timestamp,
        _metrics.c.value,
        _metrics.c.is_nan,
    ).order_by(_metrics.c.run_id, _metrics.c.key, _metrics.c.id)
    pending: list[dict[str, Any]] = []  # Any: column values
    group: tuple[str, str] | None = None
    steps: list[int] = []
    times: list[float] = []
    values: list[float] = []

    def close_chunk() -> None:
        if group is not None and steps:
            run_id, key = group
            data = _pack(steps, times, values)
            pending.append(
                {
                    "run_id": run_id,
                    "key": key,
                    "count": len(steps),
                    "min_step": min(steps),
                    "max_step": max(steps),
                    "data": data,
                }
            )
            steps.clear()
            times.clear()
            values.clear()
        if len(pending) >= _ROWS_PER_INSERT:
            conn.execute(sa.insert(_chunks), pending)
            pending.clear()

    rows = conn.execute(query, execution_options={"yield_per": 10_000})
    for run_id, key, step, timestamp, value, is_nan in rows:
        if (run_id, key) != group or len(steps) >= _POINTS_PER_CHUNK:
            close_chunk()
            group = (run_id, key)
        steps.append(int(step))
        times.append(float(timestamp))
        values.append(math.nan if is_nan or value is None else float(value))
    close_chunk()
    if pending:
        conn.execute(sa.insert(_chunks), pending)


def downgrade() -> None:
    """Recreate ``metrics`` with one row per point, in write order, and drop the chunks."""
    op.create_table(
        "metrics",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("key", _KEY, nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("is_nan", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_metrics_run_id_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_metrics"),
    )
    op.create_index("ix_metrics_run_id_key_step", "metrics", ["run_id", "key", "step"])
    conn = op.get_bind()
    query = sa.select(_chunks.c.run_id, _chunks.c.key, _chunks.c.data).order_by(_chunks.c.id)
    pending: list[dict[str, Any]] = []  # Any: column values
    for run_id, key, data in conn.execute(query, execution_options={"yield_per": 1_000}):
        for step, timestamp, value in _unpack(bytes(data)):
            is_nan = math.isnan(value)
            pending.append(
                {
                    "run_id": run_id,
                    "key": key,
                    "step": step,
                    "timestamp": timestamp,
                    "value": None if is_nan else value,
                    "is_nan": is_nan,
                }
            )
        if len(pending) >= _ROWS_PER_INSERT:
            conn.execute(sa.insert(_metrics), pending)
            pending.clear()
    if pending:
        conn.execute(sa.insert(_metrics), pending)
    op.drop_index("ix_metric_chunks_run_id_key", table_name="metric_chunks")
    op.drop_table("metric_chunks")
