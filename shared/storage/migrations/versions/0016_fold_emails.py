"""emails in lower case, as they are now stored and compared

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

A CSM key sees the accounts whose owner email equals the key's. Both were stored as
sent, and the email validator lower-cases only the domain, so a CRM's
``Anna@Example.COM`` left the account out of ``anna@example.com``'s portfolio (and
capacity counted two CSMs). Emails are now folded to lower case where they enter
(``shared.contracts.events.Email``, key creation); this folds the ones stored before.
A saved view whose folded owner already has a view of the same name keeps the folded
owner's. Not undone on downgrade: the original case is not kept, and lower case
matches under both versions.
"""

from __future__ import annotations

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
    for table, columns in COLUMNS.items():
        for column in columns:
            op.execute(
                f"UPDATE {table} SET {column} = lower({column}) WHERE {column} <> lower({column})"
            )
    # saved_views' key is (owner, name): fold only where no folded twin exists.
    op.execute(
        "DELETE FROM saved_views WHERE owner <> lower(owner) AND EXISTS ("
        "SELECT 1 FROM saved_views AS twin WHERE twin.owner = lower(saved_views.owner) "
        "AND twin.name = saved_views.name)"
    )
    op.execute("UPDATE saved_views SET owner = lower(owner) WHERE owner <> lower(owner)")


def downgrade() -> None:
    pass
