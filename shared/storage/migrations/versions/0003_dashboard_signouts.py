"""dashboard sign-outs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.storage.tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_signouts",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_dashboard_signouts")),
    )
    with op.batch_alter_table("dashboard_signouts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dashboard_signouts_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("dashboard_signouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dashboard_signouts_expires_at"))
    op.drop_table("dashboard_signouts")
