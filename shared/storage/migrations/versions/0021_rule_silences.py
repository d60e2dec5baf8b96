"""rules silenced on one account

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07

A snooze quiets one alert for at most 90 days; the rule's next episode on the same
account came back to the lists and to Slack, for situations the team knew and handled
(found from outside). ``rule_silences`` keeps a rule silenced on an account until a day
(services/alerts/silences.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.storage.tables

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_silences",
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("until", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("silenced_by", sa.String(320), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("silenced_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "rule", name=op.f("pk_rule_silences")),
    )


def downgrade() -> None:
    op.drop_table("rule_silences")
