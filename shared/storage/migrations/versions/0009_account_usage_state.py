"""usage state per account: one compact value replaces the per-event and per-user rows

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

``account_usage`` holds each account's usage state (services/scoring/usage.py), built
here from the rows it replaces: ``account_users``, ``activity_daily_users`` and
``activity_daily_names`` (then dropped). ``processed_events`` is dropped: its ids are
not carried over, so an event resent within the 48 hours before the upgrade may count
twice. ``activity_daily`` gains ``active_users``, filled from the daily users.
``import_rejects`` lists the records an import rejected, for ``import --restart``;
``bus_outbox`` holds scoring's messages between its commit and their publication.

The encoding is written out here (format 1) rather than imported: a migration must
keep producing what its version stored, whatever the code becomes later.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
import zstandard
from alembic import op

import shared.storage.tables

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_CODES = {"event": "e", "platform": "p", "module": "m", "value": "v"}


def upgrade() -> None:
    usage = op.create_table(
        "account_usage",
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("updated_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_usage")),
    )
    op.create_table(
        "bus_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("created_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bus_outbox")),
    )
    op.create_table(
        "import_rejects",
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("record", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source", "record", name=op.f("pk_import_rejects")),
    )
    with op.batch_alter_table("activity_daily") as batch_op:
        batch_op.add_column(
            sa.Column("active_users", sa.Integer(), nullable=False, server_default="0")
        )
    bind = op.get_bind()
    states = _states(bind)
    now = datetime.now(UTC)
    rows = [
        {"account_id": account_id, "state": _encode(state), "updated_at": now}
        for account_id, state in sorted(states.items())
    ]
    if rows:
        op.bulk_insert(usage, rows)
    daily_users = sa.table(
        "activity_daily_users", sa.column("account_id"), sa.column("day"), sa.column("user_id")
    )
    daily = sa.table(
        "activity_daily", sa.column("account_id"), sa.column("day"), sa.column("active_users")
    )
    bind.execute(
        daily.update().values(
            active_users=sa.select(sa.func.count())
            .select_from(daily_users)
            .where(
                daily_users.c.account_id == daily.c.account_id,
                daily_users.c.day == daily.c.day,
            )
            .scalar_subquery()
        )
    )
    with op.batch_alter_table("processed_events") as batch_op:
        batch_op.drop_index("ix_processed_events_account_time")
    for table in ("processed_events", "activity_daily_users", "activity_daily_names"):
        op.drop_table(table)
    op.drop_table("account_users")


def _states(bind: Any) -> dict[str, dict[str, Any]]:
    """account → its state as plain lists and maps, from the old rows."""
    states: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"users": [], "first": [], "index": {}, "days": {}, "names": {}}
    )

    def user(state: dict[str, Any], user_id: str, ordinal: int) -> int:
        index = state["index"].get(user_id)
        if index is None:
            index = state["index"][user_id] = len(state["users"])
            state["users"].append(user_id)
            state["first"].append(ordinal)
        state["first"][index] = min(state["first"][index], ordinal)
        return int(index)

    def day(state: dict[str, Any], on: Any) -> list[Any]:
        ordinal = _day(on).toordinal()
        return state["days"].setdefault(ordinal, [0, 0.0, [], {}])  # type: ignore[no-any-return]

    for row in bind.execute(
        sa.text("SELECT account_id, user_id, first_active_on FROM account_users ORDER BY 1, 3, 2")
    ):
        user(states[row[0]], row[1], _day(row[2]).toordinal())
    for row in bind.execute(
        sa.text("SELECT account_id, day, events, duration_s FROM activity_daily")
    ):
        bucket = day(states[row[0]], row[1])
        bucket[0], bucket[1] = int(row[2]), float(row[3])
    for row in bind.execute(sa.text("SELECT account_id, day, user_id FROM activity_daily_users")):
        state = states[row[0]]
        bucket = day(state, row[1])
        bucket[2].append(user(state, row[2], _day(row[1]).toordinal()))
    for row in bind.execute(
        sa.text('SELECT account_id, day, dimension, name, "count" FROM activity_daily_names')
    ):
        code = _CODES.get(row[2])
        if code is not None:
            state = states[row[0]]
            names = state["names"]
            index = names.setdefault(f"{code}:{row[3]}", len(names))
            day(state, row[1])[3][index] = int(row[4])
    return states


def _day(value: Any) -> date:
    """A Date column read by a raw query: text on SQLite."""
    if isinstance(value, str):
        return date.fromisoformat(value)
    assert isinstance(value, date)
    return value


def _encode(state: dict[str, Any]) -> bytes:
    """Format 1 of services/scoring/usage.py: MessagePack arrays, zstd, a version byte."""
    names = sorted(state["names"], key=state["names"].__getitem__)
    stored = [state["users"], state["first"], state["days"], {}, 0, names]
    packed = msgspec.msgpack.encode(stored)
    return bytes([1]) + zstandard.ZstdCompressor(level=3).compress(packed)


def downgrade() -> None:
    # The per-event and per-user rows are not rebuilt: the counts start again empty.
    op.drop_table("account_usage")
    op.drop_table("import_rejects")
    op.drop_table("bus_outbox")
    with op.batch_alter_table("activity_daily") as batch_op:
        batch_op.drop_column("active_users")
    op.create_table(
        "account_users",
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("first_active_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "user_id", name=op.f("pk_account_users")),
    )
    op.create_table(
        "activity_daily_names",
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("dimension", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "account_id", "day", "dimension", "name", name=op.f("pk_activity_daily_names")
        ),
    )
    op.create_table(
        "activity_daily_users",
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint(
            "account_id", "day", "user_id", name=op.f("pk_activity_daily_users")
        ),
    )
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("account_id", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_processed_events")),
    )
    with op.batch_alter_table("processed_events") as batch_op:
        batch_op.create_index(
            "ix_processed_events_account_time", ["account_id", "occurred_at"], unique=False
        )
