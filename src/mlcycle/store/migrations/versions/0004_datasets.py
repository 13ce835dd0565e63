"""Versioned datasets: their names and write leases, and one row per version.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_NAME = sa.String(128)
_DIGEST = sa.String(80)


def upgrade() -> None:
    """Create ``datasets`` and ``dataset_versions``."""
    op.create_table(
        "datasets",
        sa.Column("name", _NAME, nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("time_column", sa.String(256), nullable=True),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("lock_owner", sa.String(64), nullable=True),
        sa.Column("lock_until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_datasets"),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("name", _NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("columns", sa.Text(), nullable=False),
        sa.Column("digest", _DIGEST, nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("delta_version", sa.BigInteger(), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("profile_digest", _DIGEST, nullable=True),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["name"], ["datasets.name"], name="fk_dataset_versions_name_datasets"
        ),
        sa.PrimaryKeyConstraint("name", "version", name="pk_dataset_versions"),
    )
    op.create_index("ix_dataset_versions_digest", "dataset_versions", ["digest"])


def downgrade() -> None:
    """Drop the dataset tables."""
    op.drop_table("dataset_versions")
    op.drop_table("datasets")
