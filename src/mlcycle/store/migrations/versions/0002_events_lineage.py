"""Latest metric values, environments, artifacts, the event log, cursors and lineage edges.

``latest_metrics`` is backfilled from the metric history: the value with the
greatest step, then timestamp, of every run and key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.String(26)
_KEY = sa.String(250)
_REF = sa.String(1000)
_DIGEST = sa.String(80)
_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_BACKFILL = """
INSERT INTO latest_metrics (run_id, key, step, timestamp, value, is_nan)
SELECT m.run_id, m.key, m.step, m.timestamp, m.value, m.is_nan
FROM metrics AS m
WHERE m.id = (
    SELECT m2.id FROM metrics AS m2
    WHERE m2.run_id = m.run_id AND m2.key = m.key
    ORDER BY m2.step DESC, m2.timestamp DESC, m2.id DESC
    LIMIT 1
)
"""


def upgrade() -> None:
    """Create the tables and fill ``latest_metrics`` from what is already logged."""
    op.create_table(
        "latest_metrics",
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("key", _KEY, nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("is_nan", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_latest_metrics_run_id_runs"),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_latest_metrics"),
    )
    op.create_index("ix_latest_metrics_key_value", "latest_metrics", ["key", "value"])
    op.execute(_BACKFILL)
    op.create_table(
        "environments",
        sa.Column("digest", _DIGEST, nullable=False),
        sa.Column("python", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(256), nullable=False),
        sa.Column("packages", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_environments"),
    )
    op.create_table(
        "artifacts",
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("name", sa.String(1000), nullable=False),
        sa.Column("digest", _DIGEST, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_artifacts_run_id_runs"),
        sa.PrimaryKeyConstraint("run_id", "name", name="pk_artifacts"),
    )
    op.create_index("ix_artifacts_digest", "artifacts", ["digest"])
    _create_event_tables()


def _create_event_tables() -> None:
    op.create_table(
        "events",
        sa.Column("position", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("id", _ID, nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("subject", _REF, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("position", name="pk_events"),
        sa.UniqueConstraint("id", name="uq_events_id"),
    )
    op.create_index("ix_events_type", "events", ["type"])
    op.create_index("ix_events_subject", "events", ["subject"])
    op.create_table(
        "event_cursors",
        sa.Column("consumer", sa.String(256), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", name="pk_event_cursors"),
    )
    op.create_table(
        "lineage_edges",
        sa.Column("source", _REF, nullable=False),
        sa.Column("target", _REF, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("source", "target", "kind", name="pk_lineage_edges"),
    )
    op.create_index("ix_lineage_edges_target", "lineage_edges", ["target"])


def downgrade() -> None:
    """Drop the tables this revision added."""
    for name in (
        "lineage_edges",
        "event_cursors",
        "events",
        "artifacts",
        "environments",
        "latest_metrics",
    ):
        op.drop_table(name)
