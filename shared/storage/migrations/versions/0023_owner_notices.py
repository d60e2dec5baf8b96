"""whom each account's handover was told to

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-08

Accounts reassigned to a CSM (by a lead, or by the CRM) reached their new owner only as
alerts did: nobody told them the accounts were theirs now (found from outside).
``owner_notices`` keeps whom each account's handover was told to, so the new owner is
told once (services/alerts/handover.py). It starts empty: every account is taken as
told to its owner when the alerts service first sees it, so an upgrade tells nobody.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.storage.tables

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "owner_notices",
        sa.Column("account_id", sa.String(200), nullable=False),
        sa.Column("owner_email", sa.String(320), nullable=False),
        sa.Column("told_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_owner_notices")),
    )


def downgrade() -> None:
    op.drop_table("owner_notices")
