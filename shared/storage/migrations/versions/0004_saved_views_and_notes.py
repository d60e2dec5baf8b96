"""dashboard saved views and account notes

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.storage.tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saved_views",
        sa.Column("owner", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("created_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", "name", name=op.f("pk_saved_views")),
    )
    op.create_table(
        "account_notes",
        sa.Column(
            "note_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("author", sa.String(length=320), nullable=False),
        sa.Column("touchpoint_kind", sa.String(length=20), nullable=True),
        sa.Column("event_id", sa.String(length=200), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("note_id", name=op.f("pk_account_notes")),
    )
    with op.batch_alter_table("account_notes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_account_notes_account_id"), ["account_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("account_notes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_notes_account_id"))
    op.drop_table("account_notes")
    op.drop_table("saved_views")
