"""an import's accounts not scored yet, a row each

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

``import_pending``: the first day of each account an import has read but not scored
yet, a row per account. Before, they were one JSON value in ``import_calendar.pending``,
rewritten whole with every batch (127 MB written in all for 200k accounts first seen on
one day). The accounts a stopped import left there move to the new table.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_calendar = sa.table(
    "import_calendar",
    sa.column("group_id", sa.String),
    sa.column("pending", sa.JSON),
)
_pending = sa.table(
    "import_pending",
    sa.column("group_id", sa.String),
    sa.column("account_id", sa.String),
    sa.column("first_day", sa.Date),
)


def upgrade() -> None:
    op.create_table(
        "import_pending",
        sa.Column("group_id", sa.String(200), primary_key=True),
        sa.Column("account_id", sa.String(200), primary_key=True),
        sa.Column("first_day", sa.Date(), nullable=False),
    )
    bind = op.get_bind()
    rows = [
        {"group_id": group_id, "account_id": account_id, "first_day": date.fromisoformat(day)}
        for group_id, pending in bind.execute(sa.select(_calendar.c.group_id, _calendar.c.pending))
        for account_id, day in (pending or {}).items()
    ]
    if rows:
        op.bulk_insert(_pending, rows)
    with op.batch_alter_table("import_calendar") as batch:
        batch.drop_column("pending")


def downgrade() -> None:
    with op.batch_alter_table("import_calendar") as batch:
        batch.add_column(sa.Column("pending", sa.JSON()))
    bind = op.get_bind()
    kept: dict[str, dict[str, str]] = {}
    for group_id, account_id, day in bind.execute(sa.select(_pending)):
        kept.setdefault(group_id, {})[account_id] = day.isoformat()
    for group_id, pending in kept.items():
        bind.execute(
            _calendar.update().where(_calendar.c.group_id == group_id).values(pending=pending)
        )
    op.drop_table("import_pending")
