"""The model registry: models, their versions, their aliases and every alias move.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_NAME = sa.String(128)
_ALIAS = sa.String(64)
_DIGEST = sa.String(80)
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create ``registered_models``, ``model_versions``, ``model_aliases`` and ``alias_moves``."""
    op.create_table(
        "registered_models",
        sa.Column("name", _NAME, nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_registered_models"),
    )
    op.create_table(
        "model_versions",
        sa.Column("name", _NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("flavor", sa.String(64), nullable=False),
        sa.Column("digest", _DIGEST, nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(26), nullable=True),
        sa.Column("dataset_versions", sa.Text(), nullable=False),
        sa.Column("code_version", sa.String(80), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("safe", sa.Boolean(), nullable=False),
        sa.Column("files", sa.Text(), nullable=False),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("limitations", sa.Text(), nullable=True),
        sa.Column("evaluation", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["name"], ["registered_models.name"], name="fk_model_versions_name_registered_models"
        ),
        sa.PrimaryKeyConstraint("name", "version", name="pk_model_versions"),
    )
    op.create_index("ix_model_versions_digest", "model_versions", ["digest"])
    op.create_index("ix_model_versions_run_id", "model_versions", ["run_id"])
    op.create_table(
        "model_aliases",
        sa.Column("name", _NAME, nullable=False),
        sa.Column("alias", _ALIAS, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["name"], ["registered_models.name"], name="fk_model_aliases_name_registered_models"
        ),
        sa.PrimaryKeyConstraint("name", "alias", name="pk_model_aliases"),
    )
    op.create_table(
        "alias_moves",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("name", _NAME, nullable=False),
        sa.Column("alias", _ALIAS, nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("time", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("gates", sa.Text(), nullable=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["name"], ["registered_models.name"], name="fk_alias_moves_name_registered_models"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_alias_moves"),
    )
    op.create_index("ix_alias_moves_name_alias", "alias_moves", ["name", "alias"])


def downgrade() -> None:
    """Drop the registry tables."""
    op.drop_table("alias_moves")
    op.drop_table("model_aliases")
    op.drop_table("model_versions")
    op.drop_table("registered_models")
