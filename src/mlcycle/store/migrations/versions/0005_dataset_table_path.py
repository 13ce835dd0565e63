"""Where a dataset's Delta table lives, once an erasure has rewritten it elsewhere.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``datasets.table_path`` (NULL: the table is at ``datasets/<name>``)."""
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("table_path", sa.String(512), nullable=True))


def downgrade() -> None:
    """Drop ``datasets.table_path``."""
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("table_path")
