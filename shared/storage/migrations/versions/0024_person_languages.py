"""the language each person chose, for what they are sent

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-08

Notices went out in the team's one language (``HEALTHWATCH_LANGUAGE``) to a team whose
CSMs read English and Chinese (found from outside). ``person_languages`` keeps the
language a person chose on the dashboard, which their notices then follow
(shared/people.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.storage.tables

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "person_languages",
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("language", sa.String(10), nullable=False),
        sa.Column("chosen_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("email", name=op.f("pk_person_languages")),
    )


def downgrade() -> None:
    op.drop_table("person_languages")
