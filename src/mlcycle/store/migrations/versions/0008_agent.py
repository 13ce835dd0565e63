"""The agent: schedules, the firings of their triggers, and the agents' leases.

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None

_NAME = sa.String(128)


def upgrade() -> None:
    """Create ``schedules``, ``trigger_firings`` and ``agent_leases``."""
    op.create_table(
        "schedules",
        sa.Column("name", _NAME, nullable=False),
        sa.Column("target", sa.String(1000), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("spec", sa.String(256), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("added_position", sa.BigInteger(), nullable=False),
        sa.Column("last_fired_at", sa.Float(), nullable=True),
        sa.Column("last_fired_tick", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_schedules"),
    )
    op.create_table(
        "trigger_firings",
        sa.Column("schedule", _NAME, nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("fired_at", sa.Float(), nullable=False),
        sa.Column("agent", sa.String(256), nullable=False),
        sa.Column("tick", sa.Float(), nullable=True),
        sa.Column("position", sa.BigInteger(), nullable=True),
        sa.Column("command", sa.Text(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("schedule", "key", name="pk_trigger_firings"),
    )
    op.create_index("ix_trigger_firings_fired_at", "trigger_firings", ["fired_at"])
    op.create_table(
        "agent_leases",
        sa.Column("name", _NAME, nullable=False),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_agent_leases"),
    )


def downgrade() -> None:
    """Drop the agent's tables."""
    op.drop_table("agent_leases")
    op.drop_index("ix_trigger_firings_fired_at", table_name="trigger_firings")
    op.drop_table("trigger_firings")
    op.drop_table("schedules")
