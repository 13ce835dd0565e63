"""Monitor results: one row per metric of each monitored window of a deployment.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``monitor_results``."""
    op.create_table(
        "monitor_results",
        sa.Column("deployment", sa.String(128), nullable=False),
        sa.Column("window_end", sa.Float(), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.Column("metric", sa.String(512), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("recorded_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "deployment", "window_end", "window_start", "metric", name="pk_monitor_results"
        ),
    )
    op.create_index(
        "ix_monitor_results_deployment_metric_window_end",
        "monitor_results",
        ["deployment", "metric", "window_end"],
    )


def downgrade() -> None:
    """Drop ``monitor_results``."""
    op.drop_index("ix_monitor_results_deployment_metric_window_end", table_name="monitor_results")
    op.drop_table("monitor_results")
