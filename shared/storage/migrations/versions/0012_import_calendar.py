"""where an import's day-by-day scoring stands

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

``import_calendar``: the newest day the imports have read, the day through which
every account is scored, and the first days of accounts read but not scored yet, per
consumer group. Before, both lived in the import's memory:
an import stopped after its last line and run again scored none of its last days, and
one stopped halfway scored every day again from the first.

Nothing to convert: an install without a row starts as before (from each account's
first scored day).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "import_calendar",
        sa.Column("group_id", sa.String(200), primary_key=True),
        sa.Column("newest", sa.Date()),
        sa.Column("closed", sa.Date()),
        sa.Column("pending", sa.JSON()),
    )


def downgrade() -> None:
    op.drop_table("import_calendar")
