"""the score's JSON columns compressed with LZ4 on PostgreSQL

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05

Every score writes its inputs and explanation twice: the account's current row
(``account_health.inputs``, ``.components``) and the day's row (``health_daily.inputs``,
``.explanation``), about 2.6 and 2.2 KB of JSON each, above PostgreSQL's 2 KB threshold
for compressing a row's large values. The default method, pglz, made those writes the
slowest statements of a sweep, an import's day and a batch. With LZ4 an UPDATE of 200
accounts' current rows took 10.5 instead of 19.4 ms on the 2-core machine, the values are
stored about as small, and reading them back is faster too (docs/benchmarks.md, the
section of 2026-12-05, late morning).

A value keeps the method it was written with: existing rows stay readable as they are,
and each row moves to LZ4 when it is next written. PostgreSQL built without LZ4 (the
setting ``default_toast_compression`` then offers no ``lz4``) and SQLite are left as they
are. Downgrading sets pglz back for new values; values written with LZ4 stay readable.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# table → its JSON columns written with every score
COLUMNS = {
    "account_health": ("inputs", "components"),
    "health_daily": ("inputs", "explanation"),
}


def _set(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    offered = bind.execute(
        sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
    ).scalar()
    if method not in (offered or []):
        return
    for table, columns in COLUMNS.items():
        changes = ", ".join(f"ALTER COLUMN {column} SET COMPRESSION {method}" for column in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    _set("lz4")


def downgrade() -> None:
    _set("pglz")
