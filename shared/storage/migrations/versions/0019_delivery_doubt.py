"""deliveries remember an attempt whose outcome is unknown

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07

A sender killed between posting to Slack and recording it, or a post that timed out,
leaves a delivery whose message may be in Slack already: sent again blindly, it went
twice (found from outside, a ``kill -9`` of the alerts service mid-delivery).
``doubtful_lease`` keeps the end of the lease of the earliest such attempt, so the next
attempt first looks in the conversation for the message (``SlackChannel.posted``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.storage.tables

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "doubtful_lease", shared.storage.tables.UTCDateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("doubtful_lease")
