"""success plans and their milestones

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.storage.tables

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "success_plans",
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("template", sa.String(length=60), nullable=True),
        sa.Column("start_on", sa.Date(), nullable=False),
        sa.Column("created_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("updated_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_success_plans")),
    )
    op.create_table(
        "plan_milestones",
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=60), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("measure", sa.String(length=300), nullable=True),
        sa.Column("op", sa.String(length=2), nullable=False),
        sa.Column("target", sa.Float(), nullable=True),
        sa.Column("baseline", sa.Float(), nullable=True),
        sa.Column("start_on", sa.Date(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("achieved_on", sa.Date(), nullable=True),
        sa.Column("checked_by", sa.String(length=320), nullable=True),
        sa.Column("alert_status", sa.String(length=10), server_default="ok", nullable=False),
        sa.Column("fire_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("revision", sa.Integer(), server_default="0", nullable=False),
        sa.Column("removed", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("updated_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "key", name=op.f("pk_plan_milestones")),
    )


def downgrade() -> None:
    op.drop_table("plan_milestones")
    op.drop_table("success_plans")
