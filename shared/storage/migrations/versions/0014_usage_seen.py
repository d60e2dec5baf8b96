"""the dedup window in its own table, a row per account and hour

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04

``usage_seen``: the hashes of the event ids each account received in the last 48 hours,
a row per hour of receipt. Before, they were part of the account's usage state
(``account_usage.state``), encoded and written whole with every batch: a busy account's
100k ids cost 9.5-14 ms a save. A state written before keeps its window inside until
its next save, which moves it here (services/scoring/usage.py reads both). Downgrading
drops the table: the older version then finds the moved windows empty, and a resend
within 48 hours of the downgrade may count twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_seen",
        sa.Column("account_id", sa.String(200), primary_key=True),
        sa.Column("hour", sa.Integer(), primary_key=True),
        sa.Column("ids", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("usage_seen")
