"""alert lifecycle

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.storage.tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_activity",
        sa.Column(
            "activity_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("alert_id", sa.String(length=300), nullable=False),
        sa.Column("at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("activity_id", name=op.f("pk_alert_activity")),
    )
    with op.batch_alter_table("alert_activity", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_activity_alert_id"), ["alert_id"], unique=False)

    op.create_table(
        "alerting_configs",
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_alerting_configs")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("owner_email", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("tier", sa.String(length=20), nullable=True))
        batch_op.add_column(
            sa.Column("updated_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "acknowledged_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("acknowledged_by", sa.String(length=320), nullable=True))
        batch_op.add_column(
            sa.Column(
                "resolved_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "snoozed_until", shared.storage.tables.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("snooze_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("muted", sa.Boolean(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("not_useful", sa.Boolean(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "last_notified_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("repeats", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column(
                "escalated_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.create_index(batch_op.f("ix_alerts_owner_email"), ["owner_email"], unique=False)

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("notification", sa.String(length=60), server_default="fire", nullable=False)
        )
        batch_op.add_column(sa.Column("account_id", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("payload", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("created_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.drop_constraint(batch_op.f("uq_deliveries_alert_channel"), type_="unique")
        batch_op.create_index(
            "ix_deliveries_destination", ["channel", "destination", "status"], unique=False
        )
        batch_op.create_unique_constraint(
            "uq_deliveries_notification", ["alert_id", "notification", "channel", "destination"]
        )

    with op.batch_alter_table("rule_state", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=10), server_default="ok", nullable=False)
        )
        batch_op.add_column(
            sa.Column("since", shared.storage.tables.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("cleared_at", shared.storage.tables.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("severity", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("revision", sa.Integer(), server_default="0", nullable=False))
    # The one rule before this revision (low_activity) was critical: keep firing keys firing,
    # so their alerts neither fire again nor get lost.
    op.execute(
        "UPDATE rule_state SET status = 'firing', since = changed_at, severity = 'critical' "
        "WHERE firing"
    )
    with op.batch_alter_table("rule_state", schema=None) as batch_op:
        batch_op.drop_column("firing")


def downgrade() -> None:
    with op.batch_alter_table("rule_state", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("firing", sa.BOOLEAN(), server_default=sa.false(), nullable=False)
        )
    op.execute("UPDATE rule_state SET firing = (status = 'firing')")
    with op.batch_alter_table("rule_state", schema=None) as batch_op:
        batch_op.drop_column("revision")
        batch_op.drop_column("severity")
        batch_op.drop_column("cleared_at")
        batch_op.drop_column("since")
        batch_op.drop_column("status")

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_constraint("uq_deliveries_notification", type_="unique")
        batch_op.drop_index("ix_deliveries_destination")
        batch_op.create_unique_constraint(
            batch_op.f("uq_deliveries_alert_channel"), ["alert_id", "channel"]
        )
        batch_op.drop_column("created_at")
        batch_op.drop_column("payload")
        batch_op.drop_column("account_id")
        batch_op.drop_column("notification")

    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_owner_email"))
        batch_op.drop_column("escalated_at")
        batch_op.drop_column("repeats")
        batch_op.drop_column("last_notified_at")
        batch_op.drop_column("not_useful")
        batch_op.drop_column("muted")
        batch_op.drop_column("snooze_reason")
        batch_op.drop_column("snoozed_until")
        batch_op.drop_column("resolved_at")
        batch_op.drop_column("acknowledged_by")
        batch_op.drop_column("acknowledged_at")
        batch_op.drop_column("updated_at")
        batch_op.drop_column("tier")
        batch_op.drop_column("owner_email")
        batch_op.drop_column("revision")

    op.drop_table("alerting_configs")
    with op.batch_alter_table("alert_activity", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_activity_alert_id"))

    op.drop_table("alert_activity")
