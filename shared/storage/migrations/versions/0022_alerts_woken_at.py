"""alerts remember when a snooze or silence of theirs ran out

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07

An alert snoozed or silenced past its escalation deadline was escalated in the same
second its CSM was reminded, as the snooze ran out (found from outside). ``woken_at``
keeps that moment; the deadline counts from it too.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.storage.tables

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(
            sa.Column("woken_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("woken_at")
