"""All configuration, in one place: every field maps to a ``HEALTHWATCH_*`` variable."""

from __future__ import annotations

from datetime import timedelta
from email.utils import getaddresses
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from shared.i18n import language_tag
from shared.storage.db import SSL_MODES

# The async drivers the storage code is written (and tested) for.
DATABASE_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
# scoring_batch_max's defaults (see its comment).
POSTGRES_BATCH_MAX = 100_000
SQLITE_BATCH_MAX = 20_000
# A dashboard secret's least length: 32 characters of a random hex or base64 string are
# 128 bits or more, past trying (a session cookie carries what it signs).
MIN_DASHBOARD_SECRET_CHARS = 32


# A TCP port (0: any free one, which tests use); a larger number was taken modulo 65536.
Port = Annotated[int, Field(ge=0, le=65535)]


class Settings(BaseSettings):
    """Settings for every service. Embedded mode when ``kafka_bootstrap`` is empty."""

    model_config = SettingsConfigDict(env_prefix="HEALTHWATCH_", env_file=".env", extra="ignore")

    # --- storage and bus -------------------------------------------------------------
    database_url: str = Field(
        "sqlite+aiosqlite:///./healthwatch.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///file.db or postgresql+asyncpg://…",
    )
    kafka_bootstrap: str = Field(
        "", description="Kafka bootstrap servers; empty means the embedded in-process bus"
    )
    topic_prefix: str = Field("hw", description="Prefix of every Kafka topic name")
    kafka_partitions: int = Field(
        6, description="Partitions of each topic created at start; caps scoring consumers"
    )
    kafka_replication: int = Field(1, description="Replication factor of created topics")
    consumer_group_scoring: str = Field(
        "healthwatch-scoring", description="Kafka consumer group (and offset key) of scoring"
    )
    consumer_group_alerts: str = Field(
        "healthwatch-alerts", description="Kafka consumer group (and offset key) of alerts"
    )

    # --- HTTP ------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address the HTTP servers bind to")
    ingest_port: Port = Field(8000, description="Ingest API port (also the dev-mode port)")
    scoring_port: Port = Field(
        8001, description="Scoring service port: /metrics and /healthz, the read API, the dashboard"
    )
    alerts_port: Port = Field(8002, description="Alerts API, /metrics and /healthz port")
    web_port: Port = Field(
        8003,
        description="`healthwatch web` port (production): the dashboard, the read and alerts "
        "APIs in one place for people",
    )
    public_url: str = Field(
        "http://127.0.0.1:8000",
        description="Base URL of the dashboard, used in links inside notifications (production: "
        "the web service's)",
    )

    # --- ingest limits ---------------------------------------------------------------
    max_batch_events: int = Field(1000, description="Most events accepted in one request")
    max_body_bytes: int = Field(
        1_048_576, description="Largest request body (after gzip decoding), bytes"
    )
    # Clients' clocks drift; an hour absorbs drift and time-zone bugs of honest
    # clients while still rejecting events stamped days ahead, which would poison
    # the event-time windows.
    max_future_skew: timedelta = Field(
        timedelta(hours=1), description="How far in the future occurred_at may be"
    )
    # The broker normally acks in milliseconds; past this the client gets a 503 and
    # retries (event ids make the retry safe), instead of holding the request open.
    produce_timeout_s: float = Field(
        10.0, description="Seconds to wait for the broker's ack before answering 503"
    )
    retry_after_s: int = Field(5, description="Retry-After sent with a 503")
    ticket_webhook_secret: SecretStr = Field(
        SecretStr(""), description="HMAC-SHA256 secret of the helpdesk ticket webhook"
    )
    # The vendors' connectors (docs/connectors.md): each is off while its secret is empty.
    zendesk_webhook_secret: SecretStr = Field(
        SecretStr(""),
        description="Zendesk webhook signing secret (POST /v1/connectors/zendesk/webhook)",
    )
    freshdesk_webhook_secret: SecretStr = Field(
        SecretStr(""),
        description="Shared secret Freshdesk's webhook sends in X-Healthwatch-Token or as the "
        "basic-auth password (POST /v1/connectors/freshdesk/webhook)",
    )
    hubspot_client_secret: SecretStr = Field(
        SecretStr(""),
        description="HubSpot app's client secret, verifying X-HubSpot-Signature-v3 "
        "(POST /v1/connectors/hubspot/webhook)",
    )
    connectors_file: str = Field(
        "",
        description="Connectors' mapping file (TOML: Zendesk organizations, HubSpot properties "
        "and owners, CSV columns); empty: the shipped defaults",
    )

    # --- scoring ---------------------------------------------------------------------
    # A late event still counts on its own day if it is at most this old relative to the
    # account's newest event; older ones are counted in a metric and ignored. Capped by
    # the window, since older days are no longer kept.
    late_grace_days: int = Field(
        90, ge=1, description="How late (days) an event may arrive and still be counted"
    )
    timezone: str = Field(
        "UTC",
        description="IANA time zone whose calendar days bucket the activity of accounts "
        "without a timezone fact of their own, and the dashboard's times for browsers that "
        "send none (e.g. Asia/Shanghai)",
    )
    language: Literal["en", "zh-CN"] = Field(
        "en",
        description="Language of the dashboard, reports and notices for people who have not "
        "chosen one (a request's Accept-Language comes first on the dashboard and for a "
        "report; the API's refusals follow Accept-Language, else English)",
    )
    # Amounts (ARR, MRR) of accounts whose facts name no currency of their own. CNY: the
    # handbook's first users are Chinese and their CRM holds yuan.
    currency: str = Field(
        "CNY",
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code of the money amounts (ARR, MRR) of accounts whose facts "
        "name no currency, e.g. CNY, USD",
    )
    # The measures read 90 days back (services/scoring/measures.py: NAME_WINDOW_DAYS), so
    # fewer kept days would score missing days as days without use. As-of measures need
    # their 30-day window within the kept days (services/scoring/as_of.py). At most 10
    # years: every day of the window stays in the account's hot usage state, decoded and
    # written again with each of its batches (issue 12: a couple of KB per account), and
    # the window is also how late an event may come; days past it are read from the long
    # history at no loss, so a longer window only costs. The bound also keeps the date
    # arithmetic of the prune (a day this many days before an event) far inside dates.
    window_days: int = Field(
        90,
        ge=90,
        le=3650,
        description="Days of daily activity kept per account before its newest event in its "
        "usage state: older events are late (90 to 3,650)",
    )
    # Two years: a year-on-year comparison (a renewal against the last one, a season
    # against the same season) reads a full year before a day a year back. The days past
    # the window live in the long history (usage_archive), a value per account and month.
    # At most 100 years, a bound no one keeping records meets: it keeps "this many days
    # before the newest event" (the prune, as-of reads) inside the calendar, where about
    # 740,000 days (back past the year 1 from today) overflowed the first prune.
    history_days: int = Field(
        730,
        ge=90,
        le=36500,
        description="Days of daily activity kept per account in all (the window and the long "
        "history before it): as-of measures reach back this far less 30 days (at least "
        "`window_days`, at most 36,500)",
    )
    # Renewal forecast (services/scoring/retention/pipeline.py): DG-05's high danger
    # means "very likely to churn"; NPS 0–6 is a detractor by NPS's own definition.
    renewal_at_risk_danger: Literal["high", "normal", "mild"] = Field(
        "high",
        description="Renewal forecast: the danger level from which (and above) a renewal "
        "is at risk whatever its health",
    )
    renewal_detractor_max_nps: int = Field(
        6,
        ge=-1,
        le=10,
        description="Renewal forecast: a latest NPS answer up to this is a detractor's and "
        "puts the renewal at risk (-1: never)",
    )
    alerting_file: str = Field(
        "",
        description="Alerting file (TOML: rules, routing, notify) used until one is stored "
        "through PUT /v1/alert-rules; empty: the shipped default",
    )
    plan_templates_file: str = Field(
        "",
        description="Success-plan templates (TOML: milestones per tier and lifecycle stage) "
        "applied to new accounts; empty: the shipped handbook defaults",
    )
    # Poll interval of the embedded bus consumer when no producer wakes it up
    # (another process may write the same SQLite file).
    bus_poll_interval_s: float = Field(
        0.5, description="Embedded bus: how often consumers look for records from other processes"
    )
    # Time-based measures move by the day; hourly passes catch a new day within an hour.
    sweep_interval_s: float = Field(
        3600, description="How often the quiet-account sweep looks for accounts to re-score"
    )
    # Each account a batch touches is rescored once, after the batch's last slice (the
    # processor decodes and applies 10,000 records at a time, so the events in memory
    # stay bounded): under a backlog, larger batches score more of its events per
    # rescoring, which is where scoring spends its time (docs/benchmarks.md: 0.052 of
    # the bare consumer at 20,000 records, 0.076 at 100,000, for 1,000 accounts). When
    # traffic is light a batch is whatever has arrived, so the cap adds no latency. On
    # SQLite a batch holds the one write lock ingest's requests wait for too: 20,000
    # records there, a second or two.
    scoring_batch_max: int = Field(
        0,
        ge=0,
        validate_default=True,
        description="Most records applied in one transaction (0: 100,000 on PostgreSQL, "
        "20,000 on SQLite)",
    )
    # Decoded usage states a scoring process keeps between batches (services/scoring/
    # usage_store.py: UsageCache): a hit skips decoding an account's state. Measured
    # with tracemalloc: a 10-user account with 50 events a day over 90 days is 1.9 KB
    # stored and 137 KB decoded, so the default bounds the cache near 300 MB; 0 turns
    # it off.
    state_cache_accounts: int = Field(
        2000,
        ge=0,
        description="Decoded account states kept in memory by each scoring process (about "
        "140 KB each for a 10-user account used daily; 0: none)",
    )
    # Longer than the slowest legitimate batch (100,000 records take several seconds)
    # plus the longest retry pause (15 s), so only a loop that truly stopped moving
    # trips it.
    consumer_stall_s: float = Field(
        120, description="Seconds a consumer may make no progress before /readyz reports it"
    )

    # --- alert delivery --------------------------------------------------------------
    slack_webhook_url: str = Field("", description="Slack incoming-webhook URL")
    slack_bot_token: SecretStr = Field(
        SecretStr(""),
        description="Slack bot token (Web API chat.postMessage to the CSM; scopes "
        "`chat:write`, and to find a notice in doubt rather than post it twice "
        "`channels:history`, `groups:history`, `im:history`, `im:write`)",
    )
    slack_api_url: str = Field(
        "https://slack.com/api/", description="Slack Web API base URL (for tests/proxies)"
    )
    slack_fallback_channel: str = Field(
        "", description="Slack channel for accounts without an owner (Web API)"
    )
    smtp_host: str = Field("", description="SMTP server host; empty disables email")
    smtp_port: Port = Field(25, description="SMTP server port")
    smtp_username: str = Field("", description="SMTP login (empty: no AUTH)")
    smtp_password: SecretStr = Field(SecretStr(""), description="SMTP password")
    # On by default: alert emails and the SMTP password must not cross networks in clear
    # text; a relay without TLS (a local test server) needs an explicit false.
    smtp_starttls: bool = Field(
        True,
        description="Upgrade the SMTP connection with STARTTLS (set false only for a relay "
        "without TLS on a trusted network; a warning is logged at start)",
    )
    smtp_from: str = Field("healthwatch@localhost", description="From address of alert emails")
    fallback_email: str = Field(
        "", description="Team address for accounts without an owner (overrides routing.team)"
    )
    webhook_url: str = Field(
        "",
        description="Generic webhook: every notice as signed JSON (without "
        "`HEALTHWATCH_WEBHOOK_SECRET` notices go out unsigned and a warning is logged at start)",
    )
    webhook_secret: SecretStr = Field(
        SecretStr(""), description="HMAC-SHA256 secret signing generic-webhook notices"
    )
    alert_timer_interval_s: float = Field(
        30.0, description="How often reminders, snooze ends, escalations and digests are checked"
    )
    # Risk cases (issue 16). The handbook gives no interval, only "re-review until the
    # danger is lifted" (DG-14) and "high: act at once, mild: keep watching" (DG-11): ours
    # follow that order, a high-danger case weekly (one working week to act), a normal one
    # every two weeks, a mild one monthly (a CSM's monthly visit cadence, CAD-03).
    case_review_days_high: int = Field(
        7, ge=1, description="Days between reviews of a high-danger case"
    )
    case_review_days_normal: int = Field(
        14, ge=1, description="Days between reviews of a normal-danger case"
    )
    case_review_days_mild: int = Field(
        30, ge=1, description="Days between reviews of a mild-danger case"
    )
    # SV-04 asks for a follow-up of every detractor but gives no deadline: a week lets the
    # CSM reach the customer (calls often fail, EW-14) while the answer is still fresh.
    nps_followup_days: int = Field(7, ge=1, description="Days to follow up an NPS detractor")
    dashboard_secret: SecretStr = Field(
        SecretStr(""),
        description="Signs dashboard sessions and form tokens, 32 characters or more; set "
        "the same on every replica (empty: a random one per process, and a restart signs "
        "everyone out)",
    )
    # Auto (unset): Secure unless the page is served over plain http on a loopback host,
    # the one case where a browser sends Secure cookies back only inconsistently; behind
    # a TLS-terminating proxy the app sees http on a public name, and stays Secure.
    cookie_secure: bool | None = Field(
        None,
        description="Secure flag of the dashboard's cookies: `true`, `false`, or auto (unset "
        "or `auto`): Secure unless the page is served over plain http on "
        "`localhost`/`127.0.0.1` (development). Behind a TLS-terminating proxy auto stays "
        "Secure; set `false` only to serve the dashboard over plain http on another name "
        "(browsers drop Secure cookies there, and sign-in fails)",
        json_schema_extra={"shown_default": "(auto)"},
    )
    slack_signing_secret: SecretStr = Field(
        SecretStr(""), description="Slack app signing secret (verifies button clicks)"
    )
    # A notice is retried until it is this old, then dead-lettered (an admin retries it).
    # Counted in attempts, twelve of them (waits drawn between 2 s and the cap) spanned
    # about 11 minutes, and an SMTP outage of 12 minutes lost its first notices for good
    # (found from outside); a day outlasts any incident a relay or Slack has had.
    delivery_give_up_after_h: float = Field(
        24.0, gt=0, description="Hours a notice is retried before it is dead-lettered"
    )
    delivery_max_attempts: int | None = Field(
        None,
        ge=1,
        description="Attempts per notice and channel before it is dead-lettered, if sooner "
        "than delivery_give_up_after_h (default: none)",
    )
    # 2 s doubling to a 5 min cap, each wait drawn between them: a Slack or SMTP incident
    # ridden out without hammering it.
    delivery_backoff_base_s: float = Field(2.0, description="First retry delay, seconds")
    delivery_backoff_cap_s: float = Field(300.0, description="Longest retry delay, seconds")
    # Slack allows about one message per second per webhook or channel.
    slack_min_interval_s: float = Field(
        1.0, description="Least time between two Slack posts to one destination"
    )
    # A claimed delivery is the claiming sender's for this long; a sender that dies
    # mid-send releases it when the lease runs out. Longer than any send's timeout (30 s).
    delivery_claim_lease_s: float = Field(
        60.0, description="Seconds a sender holds a claimed delivery before others may retry it"
    )
    delivery_poll_interval_s: float = Field(
        0.5, description="How often the outbox looks for due deliveries, seconds"
    )

    # --- CSM workload (services/scoring/workload/) ------------------------------------
    # SEG-10: ~30 visits a month per CSM; strategic accounts take 2 a month → 15, enterprise
    # 1 a month → 30, non-focus are served in batches → 200–300 (250, the middle).
    capacity_strategic: int = Field(
        15, ge=1, description="Strategic accounts one CSM can serve (SEG-10)"
    )
    capacity_enterprise: int = Field(
        30, ge=1, description="Enterprise accounts one CSM can serve (SEG-10)"
    )
    capacity_non_focus: int = Field(
        250, ge=1, description="Non-focus accounts one CSM can serve (SEG-10: 200–300)"
    )
    # CAD-03: strategic accounts weekly in the first month after go-live, then a monthly
    # visit and a quarterly business review; CAD-08: enterprise about every two months.
    # Non-focus accounts get no visits (CAD-12: a monthly mass mailing), so none is due.
    cadence_strategic_first_month_days: int = Field(
        7,
        ge=1,
        description="Days between calls or visits in a strategic account's first month "
        "after go-live (CAD-03)",
    )
    cadence_strategic_visit_days: int = Field(
        30, ge=1, description="Days between visits to a strategic account (CAD-03)"
    )
    cadence_strategic_qbr_days: int = Field(
        91, ge=1, description="Days between business reviews of a strategic account (CAD-03)"
    )
    cadence_enterprise_days: int = Field(
        61, ge=1, description="Days between calls or visits to an enterprise account (CAD-08)"
    )

    # --- misc ------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of every service"
    )

    @field_validator("cookie_secure", mode="before")
    @classmethod
    def _auto(cls, value: object) -> object:
        """Empty or "auto" (an unset compose variable, a ConfigMap value) is auto."""
        return None if isinstance(value, str) and value.strip().lower() in ("", "auto") else value

    @field_validator("slack_webhook_url", "webhook_url")
    @classmethod
    def _web_address(cls, url: str) -> str:
        """An http(s) address or none: a mistyped scheme was taken as set, and its
        failures quoted the address (a webhook's path is its credential)."""
        scheme, _, rest = url.strip().partition("://")
        if url.strip() and (scheme.lower() not in ("http", "https") or not rest.split("/")[0]):
            raise ValueError("give an http:// or https:// address (the one the service shows)")
        return url.strip()

    @field_validator("language", mode="before")
    @classmethod
    def _language_tag(cls, value: object) -> object:
        """A language as a locale names it too (``shared.i18n.language_tag``)."""
        return language_tag(value) if isinstance(value, str) else value

    @field_validator("dashboard_secret")
    @classmethod
    def _long_secret(cls, secret: SecretStr) -> SecretStr:
        """Empty (a random one per process) or 32 characters at least: a short one can be
        found from any session cookie by trying (found from outside). The error shows
        neither the value nor its length."""
        value = secret.get_secret_value().strip()
        if value and len(value) < MIN_DASHBOARD_SECRET_CHARS:
            raise ValueError(
                f"must be {MIN_DASHBOARD_SECRET_CHARS} characters or more "
                "(e.g. the output of `openssl rand -hex 32`), or empty"
            )
        return SecretStr(value)

    @field_validator("smtp_from")
    @classmethod
    def _one_mailbox(cls, value: str) -> str:
        """One address, with a display name or without ("健康监测 <hw@example.cn>"): the
        address alone is the envelope sender, so a value without one failed every email
        at its first send, not at start."""
        mailboxes = getaddresses([value.strip()])  # "a@x, b@y" is two
        address = mailboxes[0][1] if len(mailboxes) == 1 else ""
        local, at, domain = address.partition("@")
        if not (local and at and domain) or any(c.isspace() or c in ",;<>" for c in address):
            raise ValueError(
                "give one email address, with a name or without: hw@example.com or "
                "Health Watch <hw@example.com>"
            )
        return value.strip()

    @field_validator("history_days")
    @classmethod
    def _history_holds_window(cls, days: int, info: ValidationInfo) -> int:
        window = info.data.get("window_days", days)
        if days < window:
            raise ValueError(
                f"history_days ({days}) must be at least window_days ({window}): the long "
                "history holds the window's days and those before them"
            )
        return days

    @field_validator("scoring_batch_max")
    @classmethod
    def _batch_for_database(cls, records: int, info: ValidationInfo) -> int:
        if records:
            return records
        url = str(info.data.get("database_url", ""))
        return SQLITE_BATCH_MAX if url.startswith("sqlite") else POSTGRES_BATCH_MAX

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin"
            ) from exc
        return name

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        """One of the two drivers the storage code is written for; the message names the
        scheme only, never the URL, which may hold a password."""
        try:
            driver = make_url(url).drivername
        except ArgumentError:
            driver = ""
        if driver not in DATABASE_DRIVERS:
            shown = f"scheme {driver!r}" if driver else "a value that is not a URL"
            raise ValueError(
                f"{shown}: use sqlite+aiosqlite:///healthwatch.db or "
                "postgresql+asyncpg://user:password@host:5432/database"
            )
        mode = make_url(url).query.get("sslmode")
        if mode is not None and mode not in SSL_MODES:
            raise ValueError(f"sslmode={mode!r}: use one of {', '.join(SSL_MODES)}")
        return url

    @property
    def ingest_url(self) -> str:
        """The ingest API's address from this host, for the commands that call it: an
        address bound to every interface is reached on the loopback."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.ingest_port}"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def embedded(self) -> bool:
        return not self.kafka_bootstrap

    @property
    def late_grace(self) -> timedelta:
        """How late a usage event still counts on its day: ``late_grace_days``, capped by
        the window (older days are no longer kept). Scoring drops later ones; ingest
        refuses them, so that none is answered 202 and then ignored."""
        return timedelta(days=min(self.late_grace_days, self.window_days))

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"
