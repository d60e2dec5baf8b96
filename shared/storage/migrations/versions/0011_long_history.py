"""long usage history and the relationship facts as of a day

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

- ``usage_archive``: the days that leave an account's usage window, a row per account
  and month, kept for ``HEALTHWATCH_HISTORY_DAYS`` (before, they were deleted and as-of
  reads older than the window answered 422).
- ``touchpoint_log.contact_role``: which contact a touchpoint reached (the last
  decision-maker contact as of a day). Rows written before stay NULL.
- ``payment_failures``: every failed payment (the last failure as of a day).

Nothing to convert: the days deleted before this version are gone.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.storage.tables

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_archive",
        sa.Column("account_id", sa.String(200), primary_key=True),
        sa.Column("month", sa.Date(), primary_key=True),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("touchpoint_log") as batch:
        batch.add_column(sa.Column("contact_role", sa.String(30)))
    op.create_table(
        "payment_failures",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("occurred_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_payment_failures_account_time", "payment_failures", ["account_id", "occurred_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_payment_failures_account_time", "payment_failures")
    op.drop_table("payment_failures")
    with op.batch_alter_table("touchpoint_log") as batch:
        batch.drop_column("contact_role")
    op.drop_table("usage_archive")
