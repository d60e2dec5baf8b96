"""The schema, as SQLAlchemy Core tables. Alembic migrations mirror it."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BigInteger primary keys autoincrement on PostgreSQL; SQLite only autoincrements INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", String(200), nullable=False),
    Column("csm_email", String(320)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
)

# Dashboard sessions ended by signing out before they expired: their cookies no longer
# sign anyone in. A row is useless once its session would have expired anyway.
dashboard_signouts = Table(
    "dashboard_signouts",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 of the cookie's value
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

# Portfolio views a dashboard user saved under a name: the page's query string (its
# filters and order), per person (a CSM's email, else the key's id).
saved_views = Table(
    "saved_views",
    metadata,
    Column("owner", String(320), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("query", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Notes written on the dashboard about an account: free text, or the notes of a
# touchpoint logged there (``touchpoint_kind``, ``event_id``: the event sent on the bus,
# which is what scoring counts; this row only keeps the words for people to read).
account_notes = Table(
    "account_notes",
    metadata,
    Column("note_id", BigId, primary_key=True, autoincrement=True),
    Column("account_id", String(200), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("author", String(320), nullable=False),
    Column("touchpoint_kind", String(20)),
    Column("event_id", String(200)),
    Column("text", Text, nullable=False),
)

# Segment `group` / `identify` calls tie a user to an account for later `track` calls.
user_accounts = Table(
    "user_accounts",
    metadata,
    Column("user_id", String(200), primary_key=True),
    Column("account_id", String(200), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(200), primary_key=True),
    Column("name", String(500)),
    Column("seats_purchased", Integer),
    Column("tier", String(20)),
    Column("owner_email", String(320)),
    Column("owner_slack_id", String(100)),
    Column("facts", JSON, nullable=False),
    Column("facts_occurred_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Account facts history (issue 12, services/scoring/facts_history.py): the merged facts
# in force from each moment a fact event of the account occurred at, for as-of reads.
# ``facts`` holds the fields and each field's [occurred_at, event_id] stamp.
account_facts_history = Table(
    "account_facts_history",
    metadata,
    Column("account_id", String(200), primary_key=True),
    Column("occurred_at", UTCDateTime, primary_key=True),
    Column("facts", JSON, nullable=False),
)

# An account's usage in one compact value (services/scoring/usage.py): the per-day
# counters of its kept window (events, seconds, active users as account-local indices,
# counts per name), its users with their first active day, and the ids of the events
# received in the last 48 hours (dedup). Written once per batch for each account the
# batch changed, with the consumed offsets.
account_usage = Table(
    "account_usage",
    metadata,
    Column("account_id", String(200), primary_key=True),
    Column("state", LargeBinary, nullable=False),
    # Bumped by every write: a process holding the state decoded knows it is current.
    Column("version", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", UTCDateTime, nullable=False),
)

# The dedup window of ``account_usage``'s states: the 8-byte hashes of the event ids an
# account received in the last 48 hours, a row per hour of receipt (services/scoring/
# usage.py). Written with the state, only the hours that gained ids, and deleted as they
# leave the window: a busy account's window is not rewritten whole by every batch.
usage_seen = Table(
    "usage_seen",
    metadata,
    Column("account_id", String(200), primary_key=True),
    Column("hour", Integer, primary_key=True),  # hours since 1970-01-01 UTC
    Column("ids", LargeBinary, nullable=False),  # little-endian uint64, in no order
)

# The long history of an account's usage: the days that left its usage state's window
# (``account_usage``), one value per calendar month in the same encoding, kept for
# ``HEALTHWATCH_HISTORY_DAYS`` (two years by default) for as-of reads. Written when
# days leave the window (once a week per active account: state.ARCHIVE_STEP_DAYS); a
# month per row, so a write touches the newest month only and a read the months asked.
usage_archive = Table(
    "usage_archive",
    metadata,
    Column("account_id", String(200), primary_key=True),
    Column("month", Date, primary_key=True),  # its first day
    Column("state", LargeBinary, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Messages scoring produced (alerts, dead letters), written in the transaction that
# produced them and published to Kafka after it commits (shared/bus/outbox.py): a
# crash between the commit and the publish leaves them here for the next relay.
bus_outbox = Table(
    "bus_outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("topic", String(200), nullable=False),
    Column("key", LargeBinary),
    Column("value", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# The records of an import rejected so far (pseudo-topic "import:<file>", record
# number): ``healthwatch import --restart`` reads these again, and not the records
# already applied (whose ids the dedup window no longer holds).
import_rejects = Table(
    "import_rejects",
    metadata,
    Column("source", String(300), primary_key=True),
    Column("record", Integer, primary_key=True),
)

# The files an import has read (pseudo-topic "import:<file>"): a digest of each of the
# first ``records`` records (space-separated), so another file under the same name is
# refused, not taken for the one read before and skipped
# (``services/scoring/import_files.py``).
import_files = Table(
    "import_files",
    metadata,
    Column("source", String(300), primary_key=True),
    Column("fingerprint", Text, nullable=False),
    Column("records", Integer, nullable=False),
)

# The alerts an import holds (``healthwatch import``): each alert id's newest message,
# written in the transaction of the batch or day that produced it, so an import stopped
# halfway and run again still opens, at its end, what is firing then.
import_alerts = Table(
    "import_alerts",
    metadata,
    Column("alert_id", String(300), primary_key=True),
    Column("revision", Integer, nullable=False),
    Column("value", LargeBinary, nullable=False),
)

# Where the imports' day-by-day scoring stands (``ImportCalendar``), per consumer group:
# the newest day read and the day through which every account is scored. Written before
# each batch and with the days it closes, so an import stopped anywhere and run again
# scores each day once.
import_calendar = Table(
    "import_calendar",
    metadata,
    Column("group_id", String(200), primary_key=True),
    Column("newest", Date),
    Column("closed", Date),
)

# The day each account an import has read is to be scored again from: its first day,
# not scored yet (no score history row to find it by when the import runs again), or a
# day scored before that its events opened again for it (moved on as each such day is
# scored). A row per account, written when a batch first reads it and deleted once the
# calendar's closed day is scored for it: a batch writes its new accounts only (one
# JSON value of them all, rewritten per batch, grew to 127 MB written for 200k accounts
# first seen on one day).
import_pending = Table(
    "import_pending",
    metadata,
    Column("group_id", String(200), primary_key=True),
    Column("account_id", String(200), primary_key=True),
    Column("first_day", Date, nullable=False),
)

# The long daily history: one row per account and active day, rewritten from the usage
# state for the days a batch changed. Portfolio-wide reads (the lead's trends, reports)
# sum it without decoding any account's state.
activity_daily = Table(
    "activity_daily",
    metadata,
    Column("account_id", String(200), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("events", Integer, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("active_users", Integer, nullable=False, server_default="0"),
)

tickets = Table(
    "tickets",
    metadata,
    Column("ticket_id", String(200), primary_key=True),
    Column("account_id", String(200), nullable=False, index=True),
    Column("status", String(20), nullable=False),
    Column("priority", String(20), nullable=False),
    Column("type", String(20), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("first_reply_at", UTCDateTime),
    Column("solved_at", UTCDateTime),
    # The newest update wins; (occurred_at, event_id) orders ties the same on every replay.
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("event_id", String(200), nullable=False),
)

account_health = Table(
    "account_health",
    metadata,
    Column("account_id", String(200), primary_key=True),
    # Event time the state is as of: the newest event of any kind for the account.
    Column("as_of", UTCDateTime, nullable=False),
    Column("first_seen_at", UTCDateTime),
    Column("last_seen_at", UTCDateTime),
    Column("active_users_7d", Integer, nullable=False, default=0),
    Column("active_users_30d", Integer, nullable=False, default=0),
    Column("events_7d", Integer, nullable=False, default=0),
    Column("open_tickets", Integer, nullable=False, default=0),
    Column("last_touchpoint_at", UTCDateTime),
    Column("last_decision_maker_contact_at", UTCDateTime),
    Column("nps_latest", Integer),
    Column("nps_at", UTCDateTime),
    # The answer before the latest, for the trend.
    Column("nps_previous", Integer),
    Column("nps_previous_at", UTCDateTime),
    Column("last_payment_failed_at", UTCDateTime),
    Column("score", Integer),
    Column("danger_level", String(10)),
    Column("band", String(10)),
    Column("inputs", JSON),
    Column("components", JSON),
    # The wall-clock day the quiet-account sweep last scored the account.
    Column("swept_on", Date),
    Column("updated_at", UTCDateTime, nullable=False),
)

# The health score per account per day (the latest of that event-time day), with the
# model inputs and the explanation, so any past day can be read back and compared.
health_daily = Table(
    "health_daily",
    metadata,
    Column("account_id", String(200), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("score", Integer),
    Column("band", String(10), nullable=False),
    Column("inputs", JSON, nullable=False),
    Column("explanation", JSON, nullable=False),
)

band_changes = Table(
    "band_changes",
    metadata,
    Column("account_id", String(200), primary_key=True),
    Column("changed_at", UTCDateTime, primary_key=True),  # event time of the change
    Column("from_band", String(10)),
    Column("to_band", String(10), nullable=False),
    Column("score", Integer),
)

# The health model in force (the newest row); PUT /v1/health-model adds a row.
health_models = Table(
    "health_models",
    metadata,
    Column("version", String(100), primary_key=True),
    Column("source", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
)

# One row per (account, rule): where the rule's event-time lifecycle stands (ok /
# pending / firing) and how often it fired, which makes alert ids deterministic
# across replays.
rule_state = Table(
    "rule_state",
    metadata,
    Column("account_id", String(200), primary_key=True),
    Column("rule", String(100), primary_key=True),
    Column("status", String(10), nullable=False, server_default="ok"),
    Column("since", UTCDateTime),
    Column("cleared_at", UTCDateTime),
    Column("severity", String(20)),
    Column("revision", Integer, nullable=False, server_default="0"),
    Column("fire_count", Integer, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
)

# The alerting file in force (the newest row); PUT /v1/alert-rules adds a row.
alerting_configs = Table(
    "alerting_configs",
    metadata,
    Column("version", String(100), primary_key=True),
    Column("source", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
)

# Consumed offsets, written in the same transaction as the state they produced.
consumer_offsets = Table(
    "consumer_offsets",
    metadata,
    Column("group_id", String(200), primary_key=True),
    Column("topic", String(200), primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)

# One row per alert (account, rule, n-th firing), with its human lifecycle: firing →
# acknowledged → resolved, snoozed until a time, muted while a critical alert of the
# same account is open.
alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(300), primary_key=True),
    Column("account_id", String(200), nullable=False, index=True),
    Column("rule", String(100), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("status", String(20), nullable=False),  # firing / acknowledged / resolved
    Column("title", Text, nullable=False),
    Column("payload", JSON, nullable=False),  # the latest AlertEvent
    Column("revision", Integer, nullable=False, server_default="0"),
    Column("owner_email", String(320), index=True),
    Column("tier", String(20)),
    Column("fired_at", UTCDateTime, nullable=False),
    Column("stored_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime),
    Column("acknowledged_at", UTCDateTime),
    Column("acknowledged_by", String(320)),
    Column("resolved_at", UTCDateTime),
    Column("snoozed_until", UTCDateTime),
    Column("snooze_reason", Text),
    Column("muted", Boolean, nullable=False, server_default="0"),
    Column("not_useful", Boolean, nullable=False, server_default="0"),
    Column("last_notified_at", UTCDateTime),
    Column("repeats", Integer, nullable=False, server_default="0"),
    Column("escalated_at", UTCDateTime),
    # When a snooze or silence of it last ran out: its escalation deadline counts from
    # then too (services/alerts/timers.py).
    Column("woken_at", UTCDateTime),
)

# Who did what to an alert: acknowledge, snooze, resolve, comment, not useful.
alert_activity = Table(
    "alert_activity",
    metadata,
    Column("activity_id", BigId, primary_key=True, autoincrement=True),
    Column("alert_id", String(300), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(320), nullable=False),
    Column("action", String(20), nullable=False),
    Column("text", Text),
)

# The outbox: one row per notification (an alert's firing, update, reminder,
# escalation or end, or a digest), channel and destination, delivered at most once
# by a claim. ``payload`` is what to send; older rows without one send the alert.
deliveries = Table(
    "deliveries",
    metadata,
    Column("delivery_id", BigId, primary_key=True, autoincrement=True),
    Column("alert_id", String(300), nullable=False),
    Column("notification", String(60), nullable=False, server_default="fire"),
    Column("account_id", String(200)),
    Column("channel", String(20), nullable=False),
    Column("destination", String(500), nullable=False),
    Column("payload", JSON),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("claimed_until", UTCDateTime),
    # The lease end of the earliest attempt whose outcome is unknown (its sender died
    # with the delivery claimed, or the channel timed out): the message may be out
    # already, and the next attempt looks for it first. NULL: nothing in doubt.
    Column("doubtful_lease", UTCDateTime),
    Column("last_error", Text),
    Column("created_at", UTCDateTime),
    Column("delivered_at", UTCDateTime),
    UniqueConstraint(
        "alert_id", "notification", "channel", "destination", name="uq_deliveries_notification"
    ),
    Index("ix_deliveries_due", "status", "next_attempt_at"),
    Index("ix_deliveries_destination", "channel", "destination", "status"),
)

# Whom each account's handover was last told to (services/alerts/handover.py): an
# account whose owner is someone else is told to its new owner once. The alerts service
# alone writes it. An account without a row is taken as told when first seen (a new
# account, or one from before this table): the owner a CRM gives a new account is no
# handover, and an upgrade tells nobody of the accounts they already had.
owner_notices = Table(
    "owner_notices",
    metadata,
    Column("account_id", String(200), primary_key=True),
    Column("owner_email", String(320), nullable=False),
    Column("told_at", UTCDateTime, nullable=False),
)

# The language each person chose on the dashboard (signed in with a key bearing their
# email, a CSM's), which what they are sent follows (shared/people.py): a team working
# in English and Chinese got every notice in the team's one language.
person_languages = Table(
    "person_languages",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("language", String(10), nullable=False),
    Column("chosen_at", UTCDateTime, nullable=False),
)

# A rule silenced on one account until ``until`` (services/alerts/silences.py): its
# alerts there are kept snoozed until then. One row per (account, rule), its latest.
rule_silences = Table(
    "rule_silences",
    metadata,
    Column("account_id", String(200), primary_key=True),
    Column("rule", String(100), primary_key=True),
    Column("until", UTCDateTime, nullable=False),
    Column("silenced_by", String(320), nullable=False),
    Column("reason", Text),
    Column("silenced_at", UTCDateTime, nullable=False),
)

# Risk cases and tasks (issue 16): the handbook's endangered-customer review (DG-10..DG-14).
# A case is one account's problem, opened from an alert or by hand, reviewed on a cadence
# by its danger level until closed with an outcome and a lesson. Its owner is the
# account's owner now (the accounts table), never stamped on the case.
cases = Table(
    "cases",
    metadata,
    Column("case_id", BigId, primary_key=True, autoincrement=True),
    Column("account_id", String(200), nullable=False, index=True),
    # The account's id while the case is open, NULL once closed: unique, so an account
    # has one open case at most, whatever opens it twice (a replayed or re-sent alert, two
    # clicks). NULLs are distinct on SQLite and PostgreSQL: closed cases do not collide.
    Column("open_key", String(200), unique=True),
    Column("state", String(10), nullable=False),  # open / closed
    Column("danger_level", String(10), nullable=False),  # high / normal / mild
    Column("causes", JSON, nullable=False),  # cause codes (services/alerts/cases/model.py)
    Column("alert_id", String(300)),  # the alert it was opened from, if any
    Column("summary", Text, nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("opened_by", String(320), nullable=False),
    Column("next_review_at", UTCDateTime),
    Column("closed_at", UTCDateTime),
    Column("closed_by", String(320)),
    Column("outcome", String(20)),  # saved / churned / downgraded
    Column("lesson", Text),
    Column("updated_at", UTCDateTime, nullable=False),
    # When the alerts service's timer pass told people (the outbox keys each notice too,
    # so two passes tell once): the opening, the closing, and which review date was told
    # due and which told overdue.
    Column("opened_told_at", UTCDateTime),
    Column("closed_told_at", UTCDateTime),
    Column("review_told_for", UTCDateTime),
    Column("review_escalated_for", UTCDateTime),
)

# A case's reviews: who met when, what they found, and the danger level after it.
case_reviews = Table(
    "case_reviews",
    metadata,
    Column("review_id", BigId, primary_key=True, autoincrement=True),
    Column("case_id", BigId, nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("reviewer", String(320), nullable=False),
    Column("notes", Text, nullable=False),
    Column("danger_after", String(10), nullable=False),
)

# Things people must do for an account by a date: a case's action plan (DG-13), or a task
# of its own (an NPS detractor's follow-up, SV-04). ``owner_email`` NULL: the account's
# owner now. ``source_key`` makes a task opened automatically (by an alert) once.
tasks = Table(
    "tasks",
    metadata,
    Column("task_id", BigId, primary_key=True, autoincrement=True),
    Column("account_id", String(200), nullable=False, index=True),
    Column("case_id", BigId, index=True),
    Column("kind", String(30), nullable=False),
    Column("title", Text, nullable=False),
    Column("owner_email", String(320)),
    Column("due", UTCDateTime, nullable=False),
    Column("done_at", UTCDateTime),
    Column("done_by", String(320)),
    Column("source", String(320), nullable=False),  # who made it: an email, or alert:<id>
    Column("source_key", String(400), unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    # The due date its owner was told of, and the one the lead was told overdue: a moved
    # due date is told again.
    Column("due_told_for", UTCDateTime),
    Column("overdue_told_for", UTCDateTime),
)

# The embedded bus: an append-only log in the same database file (one partition per
# topic, offset = row id). A row committed here is durable before ingest answers 2xx.
bus_log = Table(
    "bus_log",
    metadata,
    Column("offset", BigId, primary_key=True, autoincrement=True),
    Column("topic", String(200), nullable=False),
    Column("key", LargeBinary),
    Column("value", LargeBinary),
    Column("headers", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_bus_log_topic_offset", "topic", "offset"),
    # SQLite: never a number twice, even after the prune empties the table (a reused
    # offset lies below the consumers' stored ones: unread, then pruned; migration 0017).
    sqlite_autoincrement=True,
)

# Success plans (issue 16): per account, milestones with a due day and a measure to reach
# (services/scoring/plans/). The plan row says where it came from; its milestones are the
# account's own once made. ``alert_status``, ``fire_count`` and ``revision`` are the
# milestone's deviation alert, written by scoring like rule_state, so a replay publishes
# the same alert ids; they stay with the milestone's key when a plan is made anew.
success_plans = Table(
    "success_plans",
    metadata,
    Column("account_id", String(200), primary_key=True),
    Column("template", String(60)),  # the template it was made from; NULL: by hand
    Column("start_on", Date, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(320), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

plan_milestones = Table(
    "plan_milestones",
    metadata,
    Column("account_id", String(200), primary_key=True),
    Column("key", String(60), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("title", String(200), nullable=False),
    Column("measure", String(300)),  # NULL: checked by hand
    Column("op", String(2), nullable=False),
    Column("target", Float),
    Column("baseline", Float),
    Column("start_on", Date, nullable=False),
    Column("due_on", Date, nullable=False),
    Column("achieved_on", Date),
    Column("checked_by", String(320)),
    Column("alert_status", String(10), nullable=False, server_default="ok"),
    Column("fire_count", Integer, nullable=False, server_default="0"),
    Column("revision", Integer, nullable=False, server_default="0"),
    # Removed while its alert was open: kept until scoring has published the alert's end.
    Column("removed", Boolean, nullable=False, server_default="0"),
    Column("updated_at", UTCDateTime, nullable=False),
)

# --- CSM workload and NPS (services/scoring/workload/) -------------------------------
# Every touchpoint and NPS answer scoring applied, one row per event (the event id
# keeps a replay from adding one twice): the cadences' last visit or QBR (CAD-03/08)
# and the NPS trend (SV-05: an answer about every six months) need more than the newest
# one account_health keeps, and longer than the 48 hours the dedup keeps an event id.
touchpoint_log = Table(
    "touchpoint_log",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("account_id", String(200), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("touchpoint_kind", String(20), nullable=False),
    Column("csm_email", String(320)),
    # decision_maker, champion, ...: an as-of read's last decision-maker contact (NULL
    # for the rows written before migration 0011).
    Column("contact_role", String(30)),
    # Whom they met, as the event named them (NULL before migration 0020).
    Column("contact_name", String(500)),
    Index("ix_touchpoint_log_account_time", "account_id", "occurred_at"),
)

# Every failed payment scoring applied (one row per event): an as-of read's last
# failed payment, where account_health keeps only the newest.
payment_failures = Table(
    "payment_failures",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("account_id", String(200), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Index("ix_payment_failures_account_time", "account_id", "occurred_at"),
)

nps_responses = Table(
    "nps_responses",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("account_id", String(200), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False, index=True),
    Column("score", Integer, nullable=False),
    Column("user_id", String(200)),
    Column("comment", Text),
    Index("ix_nps_responses_account_time", "account_id", "occurred_at"),
)
