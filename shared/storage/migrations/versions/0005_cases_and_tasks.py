"""risk cases, their reviews, and tasks

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.storage.tables

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time() -> shared.storage.tables.UTCDateTime:
    return shared.storage.tables.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("case_id", _id(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("open_key", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("danger_level", sa.String(length=10), nullable=False),
        sa.Column("causes", sa.JSON(), nullable=False),
        sa.Column("alert_id", sa.String(length=300), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("opened_at", _time(), nullable=False),
        sa.Column("opened_by", sa.String(length=320), nullable=False),
        sa.Column("next_review_at", _time(), nullable=True),
        sa.Column("closed_at", _time(), nullable=True),
        sa.Column("closed_by", sa.String(length=320), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("lesson", sa.Text(), nullable=True),
        sa.Column("updated_at", _time(), nullable=False),
        sa.Column("opened_told_at", _time(), nullable=True),
        sa.Column("closed_told_at", _time(), nullable=True),
        sa.Column("review_told_for", _time(), nullable=True),
        sa.Column("review_escalated_for", _time(), nullable=True),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_cases")),
        sa.UniqueConstraint("open_key", name=op.f("uq_cases_open_key")),
    )
    op.create_index(op.f("ix_cases_account_id"), "cases", ["account_id"], unique=False)
    op.create_table(
        "case_reviews",
        sa.Column("review_id", _id(), autoincrement=True, nullable=False),
        sa.Column("case_id", _id(), nullable=False),
        sa.Column("at", _time(), nullable=False),
        sa.Column("reviewer", sa.String(length=320), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("danger_after", sa.String(length=10), nullable=False),
        sa.PrimaryKeyConstraint("review_id", name=op.f("pk_case_reviews")),
    )
    op.create_index(op.f("ix_case_reviews_case_id"), "case_reviews", ["case_id"], unique=False)
    op.create_table(
        "tasks",
        sa.Column("task_id", _id(), autoincrement=True, nullable=False),
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("case_id", _id(), nullable=True),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("owner_email", sa.String(length=320), nullable=True),
        sa.Column("due", _time(), nullable=False),
        sa.Column("done_at", _time(), nullable=True),
        sa.Column("done_by", sa.String(length=320), nullable=True),
        sa.Column("source", sa.String(length=320), nullable=False),
        sa.Column("source_key", sa.String(length=400), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("due_told_for", _time(), nullable=True),
        sa.Column("overdue_told_for", _time(), nullable=True),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("source_key", name=op.f("uq_tasks_source_key")),
    )
    op.create_index(op.f("ix_tasks_account_id"), "tasks", ["account_id"], unique=False)
    op.create_index(op.f("ix_tasks_case_id"), "tasks", ["case_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_tasks_case_id"), table_name="tasks")
    op.drop_index(op.f("ix_tasks_account_id"), table_name="tasks")
    op.drop_table("tasks")
    op.drop_index(op.f("ix_case_reviews_case_id"), table_name="case_reviews")
    op.drop_table("case_reviews")
    op.drop_index(op.f("ix_cases_account_id"), table_name="cases")
    op.drop_table("cases")
