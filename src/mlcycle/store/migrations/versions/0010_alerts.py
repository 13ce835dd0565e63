"""Alerts: incidents of alert rules, the state of each rule per deployment, queued notifications.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ID = sa.String(26)
_NAME = sa.String(128)


def upgrade() -> None:
    """Create ``alerts``, ``alert_rule_states`` and ``alert_deliveries``."""
    op.create_table(
        "alerts",
        sa.Column("id", _ID, nullable=False),
        sa.Column("rule", _NAME, nullable=False),
        sa.Column("deployment", _NAME, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("expression", sa.Text(), nullable=False),
        sa.Column("fired_at", sa.Float(), nullable=False),
        sa.Column("window_end", sa.Float(), nullable=False),
        sa.Column("windows", sa.Text(), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("resolved_at", sa.Float(), nullable=True),
        sa.Column("resolved_window_end", sa.Float(), nullable=True),
        sa.Column("flaps", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_state_fired_at", "alerts", ["state", "fired_at"])
    op.create_index("ix_alerts_rule_deployment", "alerts", ["rule", "deployment"])
    op.create_table(
        "alert_rule_states",
        sa.Column("rule", _NAME, nullable=False),
        sa.Column("deployment", _NAME, nullable=False),
        sa.Column("streak", sa.Integer(), nullable=False),
        sa.Column("last_window_end", sa.Float(), nullable=True),
        sa.Column("recent", sa.Text(), nullable=False),
        sa.Column("alert_id", _ID, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("rule", "deployment", name="pk_alert_rule_states"),
    )
    op.create_table(
        "alert_deliveries",
        sa.Column("id", _ID, nullable=False),
        sa.Column("alert_id", _ID, nullable=False),
        sa.Column("notifier", _NAME, nullable=False),
        sa.Column("event", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.Float(), nullable=True),
        sa.Column("claimed_by", sa.String(256), nullable=True),
        sa.Column("claimed_until", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name="fk_alert_deliveries_alert_id_alerts"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_alert_deliveries"),
    )
    op.create_index(
        "ix_alert_deliveries_status_next_attempt_at",
        "alert_deliveries",
        ["status", "next_attempt_at"],
    )
    op.create_index("ix_alert_deliveries_alert_id", "alert_deliveries", ["alert_id"])


def downgrade() -> None:
    """Drop the alerting tables."""
    op.drop_index("ix_alert_deliveries_alert_id", table_name="alert_deliveries")
    op.drop_index("ix_alert_deliveries_status_next_attempt_at", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_table("alert_rule_states")
    op.drop_index("ix_alerts_rule_deployment", table_name="alerts")
    op.drop_index("ix_alerts_state_fired_at", table_name="alerts")
    op.drop_table("alerts")
