"""touchpoint log and NPS responses (CSM workload and the NPS trend)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.storage.tables

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "touchpoint_log",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("touchpoint_kind", sa.String(length=20), nullable=False),
        sa.Column("csm_email", sa.String(length=320), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_touchpoint_log")),
    )
    op.create_index(
        "ix_touchpoint_log_account_time", "touchpoint_log", ["account_id", "occurred_at"]
    )
    op.create_table(
        "nps_responses",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_nps_responses")),
    )
    op.create_index(
        op.f("ix_nps_responses_occurred_at"), "nps_responses", ["occurred_at"], unique=False
    )
    op.create_index("ix_nps_responses_account_time", "nps_responses", ["account_id", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_nps_responses_account_time", table_name="nps_responses")
    op.drop_index(op.f("ix_nps_responses_occurred_at"), table_name="nps_responses")
    op.drop_table("nps_responses")
    op.drop_index("ix_touchpoint_log_account_time", table_name="touchpoint_log")
    op.drop_table("touchpoint_log")
