"""touchpoints keep whom they were with

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07

A touchpoint's contact name came with the event (``POST /v1/events``, the dashboard's
form) and was dropped: the account's page listed touchpoints by time alone, and whom a
CSM had met was never shown back (found from outside). ``contact_name`` keeps it beside
the role; rows written before stay without one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("touchpoint_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("contact_name", sa.String(500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("touchpoint_log", schema=None) as batch_op:
        batch_op.drop_column("contact_name")
