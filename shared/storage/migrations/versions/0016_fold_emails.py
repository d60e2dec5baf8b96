"""emails in lower case, as they are now stored and compared

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

A CSM key sees the accounts whose owner email equals the key's. Both were stored as
sent, and the email validator lower-cases only the domain, so a CRM's
``Anna@Example.COM`` left the account out of ``anna@example.com``'s portfolio (and
capacity counted two CSMs). Emails are now folded to lower case where they enter
(``shared.contracts.events.Email``, key creation); this folds the ones stored before.
Of saved views whose owners fold to one with the same name, the folded owner's (else the
first) is kept. Not undone on downgrade: the original case is not kept, and lower case
matches under both versions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# table → its email columns that portfolios, filters and capacity compare
COLUMNS = {
    "api_keys": ("csm_email",),
    "accounts": ("owner_email",),
    "alerts": ("owner_email",),
    "tasks": ("owner_email",),
    "touchpoint_log": ("csm_email",),
}


def upgrade() -> None:
    bind = op.get_bind()
    # Folded in Python, as the service folds (str.lower, shared.contracts.events.
    # fold_email): SQL's lower() folds ASCII only on SQLite and under the C locale.
    for table, columns in COLUMNS.items():
        for column in columns:
            stored = bind.execute(
                sa.text(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL")
            ).scalars()
            for value in list(stored):
                if value != value.lower():
                    bind.execute(
                        sa.text(f"UPDATE {table} SET {column} = :folded WHERE {column} = :value"),
                        {"folded": value.lower(), "value": value},
                    )
    # saved_views' key is (owner, name): of views that fold to one, the folded owner's
    # (else the first) is kept.
    rows = bind.execute(sa.text("SELECT owner, name FROM saved_views ORDER BY owner")).all()
    taken = {(owner, name) for owner, name in rows if owner == owner.lower()}
    for owner, name in rows:
        if owner == owner.lower():
            continue
        where = "WHERE owner = :owner AND name = :name"
        if (owner.lower(), name) in taken:
            bind.execute(
                sa.text(f"DELETE FROM saved_views {where}"), {"owner": owner, "name": name}
            )
            continue
        bind.execute(
            sa.text(f"UPDATE saved_views SET owner = :folded {where}"),
            {"folded": owner.lower(), "owner": owner, "name": name},
        )
        taken.add((owner.lower(), name))


def downgrade() -> None:
    pass
