"""Pipelines: pipeline runs and the step runs they group.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.String(26)


def upgrade() -> None:
    """Create ``pipeline_runs`` and ``step_runs``."""
    op.create_table(
        "pipeline_runs",
        sa.Column("id", _ID, nullable=False),
        sa.Column("pipeline", sa.String(256), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("param_sources", sa.Text(), nullable=False),
        sa.Column("datasets", sa.Text(), nullable=False),
        sa.Column("code_digest", sa.String(80), nullable=False),
        sa.Column("executor", sa.String(256), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("run_id", _ID, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("resumes", sa.Integer(), nullable=False),
        sa.Column("code_changed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pipeline_runs"),
    )
    op.create_index(
        "ix_pipeline_runs_pipeline_created_at", "pipeline_runs", ["pipeline", "created_at"]
    )
    op.create_index(
        "ix_pipeline_runs_status_heartbeat_at", "pipeline_runs", ["status", "heartbeat_at"]
    )
    op.create_table(
        "step_runs",
        sa.Column("pipeline_run_id", _ID, nullable=False),
        sa.Column("step", sa.String(256), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("upstream", sa.Text(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("outputs", sa.Text(), nullable=False),
        sa.Column("code_digest", sa.String(80), nullable=True),
        sa.Column("cache_key", sa.String(80), nullable=True),
        sa.Column("cached_from", _ID, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("run_id", _ID, nullable=True),
        sa.Column("logs", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["pipeline_run_id"],
            ["pipeline_runs.id"],
            name="fk_step_runs_pipeline_run_id_pipeline_runs",
        ),
        sa.PrimaryKeyConstraint("pipeline_run_id", "step", name="pk_step_runs"),
    )
    op.create_index("ix_step_runs_cache_key", "step_runs", ["cache_key"])


def downgrade() -> None:
    """Drop the pipeline tables."""
    op.drop_table("step_runs")
    op.drop_table("pipeline_runs")
