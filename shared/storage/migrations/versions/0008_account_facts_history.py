"""account facts history, for as-of reads of seats, tier, owner and contract

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.storage.tables

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    history = op.create_table(
        "account_facts_history",
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "occurred_at", name=op.f("pk_account_facts_history")),
    )
    # An existing install knows only the facts in force now: they become the snapshot
    # at the newest fact's time (the fields and their stamps, as the history keeps them).
    accounts = sa.table(
        "accounts",
        sa.column("account_id", sa.String()),
        sa.column("facts", sa.JSON()),
        sa.column("facts_occurred_at", shared.storage.tables.UTCDateTime(timezone=True)),
    )
    bind = op.get_bind()
    rows = [
        {
            "account_id": row.account_id,
            "occurred_at": row.facts_occurred_at,
            "facts": {
                "fields": (row.facts or {}).get("fields", {}),
                "stamps": (row.facts or {}).get("stamps", {}),
            },
        }
        for row in bind.execute(
            sa.select(accounts.c.account_id, accounts.c.facts, accounts.c.facts_occurred_at)
        )
    ]
    if rows:
        op.bulk_insert(history, rows)


def downgrade() -> None:
    op.drop_table("account_facts_history")
