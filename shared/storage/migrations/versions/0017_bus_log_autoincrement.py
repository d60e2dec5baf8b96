"""the embedded bus never hands out an offset twice

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

On SQLite, ``bus_log.offset`` was an INTEGER PRIMARY KEY without AUTOINCREMENT: SQLite
then numbers a new row one past the largest left, so once the hourly prune
(``shared.bus.embedded.prune_consumed``) had deleted every row read, offsets began
again from 1, below the offsets the consumers had stored. The events (and alerts)
accepted after that were never read, and the next prune deleted them. The table is
made again with AUTOINCREMENT (SQLite never reuses a number then). Its rows are
numbered anew above every stored offset, in their order, so that rows a reset had put
below a stored offset are read: the ones read already are read again, and counted
once (the scoring step's dedup window, the alerts service's revisions). Every topic's
rows move, the dead-letter topic's too: an offset noted from it before names another
row after. PostgreSQL's identity never went back: nothing to do there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    stored = bind.execute(sa.text("SELECT max(next_offset) FROM consumer_offsets")).scalar()
    lowest, highest = bind.execute(
        sa.text('SELECT min("offset"), max("offset") FROM bus_log')
    ).one()
    base = max(stored or 0, (highest or 0) + 1)
    op.execute(
        'CREATE TABLE bus_log_new ("offset" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, '
        "topic VARCHAR(200) NOT NULL, key BLOB, value BLOB, headers JSON NOT NULL, "
        "created_at DATETIME NOT NULL)"
    )
    op.execute(
        sa.text(
            'INSERT INTO bus_log_new ("offset", topic, key, value, headers, created_at) '
            'SELECT "offset" - :lowest + :base, topic, key, value, headers, created_at '
            'FROM bus_log ORDER BY "offset"'
        ).bindparams(lowest=lowest or 0, base=base)
    )
    op.execute("DROP TABLE bus_log")
    op.execute("ALTER TABLE bus_log_new RENAME TO bus_log")
    op.execute('CREATE INDEX ix_bus_log_topic_offset ON bus_log (topic, "offset")')
    # The next number, whether rows were copied or none: above every stored offset.
    last = base - 1 if highest is None else highest - (lowest or 0) + base
    op.execute("DELETE FROM sqlite_sequence WHERE name IN ('bus_log', 'bus_log_new')")
    op.execute(
        sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('bus_log', :seq)").bindparams(
            seq=last
        )
    )


def downgrade() -> None:
    pass  # AUTOINCREMENT is what the older releases meant: nothing to undo
