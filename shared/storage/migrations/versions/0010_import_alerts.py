"""the alerts an import holds, kept in the database

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

``import_alerts`` holds each alert id's newest message while ``healthwatch import``
runs (they were kept in memory, and lost when an import stopped halfway).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "import_alerts",
        sa.Column("alert_id", sa.String(300), primary_key=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("import_alerts")
