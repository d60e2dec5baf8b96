"""Public event contracts, version 1.

Every event has a client ``event_id`` (the idempotency key) and a timezone-aware
``occurred_at`` (event time). The server stamps ``received_at``. ``kind`` selects the
model and the Kafka topic.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, Literal, get_args
from zoneinfo import available_timezones

import orjson
from babel.numbers import list_currencies
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1

# --- ranges: what the stores and the arithmetic on a value can hold -------------------
# Event times: no product event predates 2000, and a zero date (0001-01-01, or an unset
# epoch) is a sender's bug that would overflow on the way to UTC or a day window; the
# top bound keeps every time ± any window inside datetime's range. Ingest also refuses
# event times past now + max_future_skew (a live check; this one holds on replay too).
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2200, 1, 1, tzinfo=UTC)
# Contract dates: business dates since 1970; 2200 leaves room for long contracts while
# "9999-12-31" (a CRM's "never ends") is refused: leave contract_end out instead.
EARLIEST_DATE = date(1970, 1, 1)
LATEST_DATE = date(2200, 1, 1)
# seats_purchased and quota limits land in INTEGER columns (32-bit on PostgreSQL).
INT32_MAX = 2**31 - 1
# Money: a trillion a month is beyond any account, and keeps sums far from float overflow.
MAX_MONEY = 1e12
# One usage event lasting over 30 days is a clock or unit bug (milliseconds as seconds).
MAX_DURATION_S = 30 * 86400.0
# properties are free JSON: 32 levels is far more than any analytics payload uses, and
# far below the recursion limits of the JSON encoders that carry it on.
MAX_DEPTH = 32
# The largest encoded event ingest publishes. The API takes bodies up to 1 MiB
# (max_body_bytes) and encoding may grow one (1e5 comes back as 100000.0): 2 MiB keeps
# every sane event. The bus allows more (shared/bus/kafka.py MAX_MESSAGE_BYTES, the
# broker's message.max.bytes) for the key, headers and a dead-letter copy's reason.
MAX_EVENT_BYTES = 2 * 1024 * 1024
# Control characters (C0, DEL, C1) and Unicode line breaks in an id or a name would end
# up in Kafka keys, mail headers and log lines; free text may hold newlines, never NUL
# (PostgreSQL text cannot store it). So do the invisible marks that reorder or hide
# text (bidi embeddings, overrides and isolates; zero-width space, word joiner, BOM):
# "acme\u202egnp.exe" shows as another name on every page and notice (found from
# outside). Zero-width (non-)joiners stay: emoji and several scripts need them.
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200b\u2060\ufeff]"
)


def _in_time_range(value: datetime) -> datetime:
    if not EARLIEST_TIME <= value < LATEST_TIME:
        raise ValueError(f"must be between {EARLIEST_TIME.year} and {LATEST_TIME.year}")
    return value


def _in_date_range(value: date) -> date:
    if not EARLIEST_DATE <= value < LATEST_DATE:
        raise ValueError(f"must be between {EARLIEST_DATE.year} and {LATEST_DATE.year}")
    return value


def no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(
            "must not hold control characters, line breaks or invisible marks (U+202E …)"
        )
    return value


def fold_email(value: str) -> str:
    """An email as stored and compared (see ``Email``)."""
    return value.lower()


def folded_email(value: object) -> str | None:
    """An email that may be absent (or no text, in facts stored long ago) as stored and
    compared; None for none."""
    return fold_email(value) if isinstance(value, str) and value else None


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not hold a NUL character")
    return value


@cache
def zone_names() -> frozenset[str]:
    # The IANA names (tzdata's, else the system's), without the host's own "localtime"
    # and tzdata's placeholder "Factory", whose days would differ from machine to machine.
    return frozenset(available_timezones() - {"localtime", "Factory"})


def _known_zone(value: str) -> str:
    if value not in zone_names():
        raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Asia/Shanghai")
    return value


@cache
def currency_codes() -> frozenset[str]:
    # ISO 4217 as Babel's CLDR data knows it: the codes its money formatting can name.
    return frozenset(list_currencies())


def _known_currency(value: str) -> str:
    code = value.upper()
    if code not in currency_codes():
        raise ValueError(f"unknown currency {value!r}: use an ISO 4217 code such as CNY or USD")
    return code


def _bounded_tree(value: dict[str, Any]) -> dict[str, Any]:
    """Free JSON at most MAX_DEPTH deep and without NUL in keys or strings."""
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        # Too deep for orjson, or a value it cannot carry on to the bus (an integer
        # beyond 64 bits): the walk names the first, and the second is refused here.
        _walk(value)
        raise ValueError(f"holds a value that cannot be sent on ({exc})") from None
    if _shallow_and_clean(encoded):
        return value
    _walk(value)
    return value


def _shallow_and_clean(encoded: bytes) -> bool:
    """Fast path (this runs on every usage event): JSON text, as orjson writes or reads it,
    with no more brackets than levels allowed and no NUL escape (orjson refuses a raw NUL
    in a string) holds nothing too deep or with a NUL. False: walk the tree to know."""
    return encoded.count(b"{") + encoded.count(b"[") <= MAX_DEPTH and b"\\u0000" not in encoded


def _walk(value: dict[str, Any]) -> None:
    """Level by level, not recursively: a hostile depth must not exhaust Python's stack."""
    level: list[Any] = [value]
    for _ in range(MAX_DEPTH):
        below = []
        for node in level:
            children = node
            if isinstance(node, dict):
                _no_nul("".join(node))
                children = node.values()
            for child in children:
                if isinstance(child, str):
                    _no_nul(child)
                elif isinstance(child, dict | list):
                    below.append(child)
        if not below:
            return
        level = below
    raise ValueError(f"is nested deeper than {MAX_DEPTH} levels: flatten it")


Id = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(no_control)]


def _no_slash(value: str) -> str:
    if "/" in value:
        raise ValueError(
            "must not hold '/': an account id is a part of its URLs (/v1/accounts/{id}/…), "
            "where a '/' cannot be sent, even as %2F; write another character in its place"
        )
    return value


# An account id: an id that its API paths can carry (an id with "/" was taken, and its
# own CSM's key then found no route to it; found from outside).
AccountRef = Annotated[Id, AfterValidator(_no_slash)]
Time = Annotated[AwareDatetime, AfterValidator(_in_time_range)]
Day = Annotated[date, AfterValidator(_in_date_range)]
# Names and short labels: bounded like their columns (accounts.name is 500 long).
Name = Annotated[str, Field(max_length=500), AfterValidator(no_control)]
Label = Annotated[str, Field(max_length=200), AfterValidator(no_control)]
SlackId = Annotated[str, Field(max_length=100), AfterValidator(no_control)]  # its column
# An email, in lower case: a CSM's portfolio is the accounts whose owner email equals
# the key's, and CRMs send "Anna@Example.COM" for the key's "anna@example.com" (the
# validator lower-cases only the domain). Every mail system we route to folds case.
Email = Annotated[EmailStr, AfterValidator(fold_email)]
Currency = Annotated[str, Field(min_length=3, max_length=3), AfterValidator(_known_currency)]
Subject = Annotated[str, Field(max_length=500), AfterValidator(_no_nul)]
Text = Annotated[str, Field(max_length=5000), AfterValidator(_no_nul)]


def _not_bool(value: object) -> object:
    """JSON's true and false are no numbers: pydantic would read them as 1 and 0 (a CRM's
    ``"arr": true`` as an ARR of 1)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


NotBool = BeforeValidator(_not_bool)
Money = Annotated[float, NotBool, Field(ge=0, le=MAX_MONEY, allow_inf_nan=False)]
# An IANA time-zone name ("Asia/Shanghai"), checked against the zone database: a typo
# would otherwise bucket the account's days in the wrong zone without a word.
ZoneName = Annotated[str, Field(max_length=64), AfterValidator(_known_zone)]


class Model(BaseModel):
    # A field's docstring is its description in the OpenAPI (/docs): an integrator reads
    # there what a field means, its unit and its default.
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, use_attribute_docstrings=True
    )


class EventBase(Model):
    schema_version: Literal[1] = 1
    """The contract's version; 1, the only one."""
    event_id: Id
    """Unique per event, chosen by the sender: a resend with the same id counts once
    (within 48 hours of the first; an import remembers its files instead)."""
    account_id: AccountRef
    """The customer account (company) the event belongs to, as your CRM names it (no
    "/": the id is a part of the account's URLs)."""
    occurred_at: Time
    """When it happened, with its zone ("2026-12-03T09:14:00+08:00"); at most an hour
    ahead of the receipt, usage at most 90 days back (HEALTHWATCH_LATE_GRACE_DAYS)."""
    received_at: Time | None = None
    """Set by the server when it takes the event; anything sent here is replaced."""


class Platform(StrEnum):
    pc = "pc"
    app = "app"
    api = "api"


class UsageEvent(EventBase):
    kind: Literal["usage"] = "usage"
    user_id: Id
    """The person who used the product (any stable id: active users are counted by it)."""
    event: Id
    """What they did ("login", "report_exported"): counted per name over 7, 28 and 90
    days; the model and rules can read any name."""
    module: Label | None = None
    """The product area it happened in ("reports"): module breadth and depth count these."""
    feature: Label | None = None
    """A finer name within the module, kept with the event."""
    platform: Platform = Platform.pc
    """pc, app or api; left out, pc. A mobile app should send app, or its use counts
    as the web's in the platform shares."""
    duration_s: Annotated[float | None, NotBool] = Field(
        None, ge=0, le=MAX_DURATION_S, allow_inf_nan=False
    )
    """Seconds spent, if known: usage minutes per active user."""
    properties: Annotated[dict[str, Any], AfterValidator(_bounded_tree)] = Field(
        default_factory=dict
    )
    """Anything else, kept with the event (at most 32 levels deep); a numeric "value"
    (an order's amount) is summed per event name over 90 days."""


class TicketStatus(StrEnum):
    open = "open"
    pending = "pending"
    solved = "solved"
    closed = "closed"


class TicketPriority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"


class TicketType(StrEnum):
    question = "question"
    bug = "bug"
    feature_request = "feature_request"
    other = "other"


# How far a ticket's own times may disagree in order (a helpdesk's servers' clocks, a
# time cut to the minute by an export): a ticket "opened" two minutes after its update
# is that, not a mistake.
TICKET_CLOCK_SKEW = timedelta(minutes=5)


class TicketEvent(EventBase):
    kind: Literal["ticket"] = "ticket"
    ticket_id: Id
    """The helpdesk's ticket id: its newest update (by occurred_at) is its state."""
    status: TicketStatus
    """open or pending count in the backlog; solved or closed end it."""
    priority: TicketPriority = TicketPriority.normal
    """high and urgent open tickets are counted apart."""
    type: TicketType = TicketType.other
    """A feature_request open long is a mild danger cause (DG-07)."""
    created_at: Time
    """When the ticket was opened: its age and the SLA's clock start here."""
    first_reply_at: Time | None = None
    """The support team's first answer, for the first-reply SLA (CAD-15)."""
    solved_at: Time | None = None
    """When it was solved."""
    requester: Label | None = None
    """Who asked, as the helpdesk names them."""
    subject: Subject | None = None
    """The ticket's subject line, shown on the account's page."""

    @field_validator("created_at")
    @classmethod
    def _opened_before_its_update(cls, value: datetime, info: ValidationInfo) -> datetime:
        # A ticket opened after the update that reports it is a mapping's mistake (two
        # columns swapped): taken, it counted in no backlog (found from outside).
        occurred = info.data.get("occurred_at")
        if occurred is not None and value > occurred + TICKET_CLOCK_SKEW:
            raise ValueError(
                "created_at is after occurred_at: a ticket is opened before it is updated"
            )
        return value

    @field_validator("solved_at")
    @classmethod
    def _solved_after_it_opened(
        cls, value: datetime | None, info: ValidationInfo
    ) -> datetime | None:
        created = info.data.get("created_at")
        if value is not None and created is not None and value < created - TICKET_CLOCK_SKEW:
            raise ValueError("solved_at is before created_at: a ticket is solved after it opens")
        return value


class Tier(StrEnum):
    strategic = "strategic"
    enterprise = "enterprise"
    non_focus = "non-focus"


class LifecycleStage(StrEnum):
    signed = "signed"
    implementation = "implementation"
    rollout = "rollout"
    stable = "stable"
    renewal = "renewal"
    churned = "churned"


class ContactRole(StrEnum):
    decision_maker = "decision_maker"
    champion = "champion"
    user = "user"
    other = "other"


class Contact(Model):
    name: Name
    email: Email | None = None
    role: ContactRole = ContactRole.other


class Owner(Model):
    email: Email | None = None
    """Where alerts and digests are emailed; a CSM's key sees the accounts it owns."""
    slack_id: SlackId | None = None
    """The Slack member id (U…) mentioned in the account's alerts."""
    name: Name | None = None
    """The name shown on the dashboard."""


class UsageQuota(Model):
    """A contracted allowance: at most ``limit`` uses of ``name`` (an event, module or
    platform, as in usage events) over a rolling 28 days, the window per-name counts
    are kept for. Nearly used up, it is an add-on conversation (EX-02)."""

    dimension: Literal["event", "module", "platform"] = "event"
    name: Id
    limit: Annotated[int, NotBool] = Field(gt=0, le=INT32_MAX)


# The facts a null clears: every one but the lists, which are replaced whole (an empty
# list clears them).
ClearableFact = Literal[
    "name", "seats_purchased", "plan", "mrr", "arr", "tier", "industry", "region", "owner",
    "sales_owner", "contract_start", "contract_end", "go_live", "lifecycle_stage", "icp_fit",
    "timezone", "currency",
]  # fmt: skip
CLEARABLE_FACTS: tuple[str, ...] = get_args(ClearableFact)


class AccountFacts(EventBase):
    """Account facts from the CRM. Fields left out keep their stored value (merge upsert)."""

    kind: Literal["account"] = "account"
    name: Name | None = None
    """The account's name as people read it."""
    seats_purchased: Annotated[int | None, NotBool] = Field(None, ge=0, le=INT32_MAX)
    """Seats (licences) bought: the shares of seats activated and active read it; left
    out (a single-user app), those shares are no data, not zero."""
    plan: Label | None = None
    """The plan or edition sold."""
    mrr: Money | None = None
    """Monthly recurring revenue, in ``currency``; ARR is 12 × MRR when arr is left out."""
    arr: Money | None = None
    """Annual recurring revenue, in ``currency``."""
    tier: Tier | None = None
    """strategic, enterprise or non-focus: the CSM's cadence, SLA and alert routing."""
    industry: Label | None = None
    """The customer's industry, a filter and a cohort."""
    region: Label | None = None
    """The customer's region, a filter and a cohort."""
    owner: Owner | None = None
    """The CSM who owns the account: alerts go to them."""
    sales_owner: Owner | None = None
    """The account's sales manager (CAD-08), told about a strategic account's alerts."""
    contract_start: Day | None = None
    """The contract's first day (YYYY-MM-DD): tenure and go-live are counted from it."""
    contract_end: Day | None = None
    """The contract's last day: renewal rules and forecasts read it."""
    go_live: Day | None = None
    """The day the customer went live; a later day or none 90 days after the purchase is
    a danger cause (DG-06)."""
    lifecycle_stage: LifecycleStage | None = None
    """Where the customer is, signed to renewal; churned: a lost customer (retention,
    the portfolio's counts), no longer one of the customers."""
    contacts: list[Contact] | None = Field(None, max_length=1000)
    """The customer's people and their roles: a decision maker or champion replaced is
    a danger cause (EW-12). Replaced as a whole."""
    icp_fit: bool | None = None
    """False: sold outside the ideal customer profile (a high-danger cause, DG-05)."""
    usage_quotas: list[UsageQuota] | None = Field(None, max_length=1000)
    """Contracted usage allowances (API calls, reports, …); replaced as a whole."""
    timezone: ZoneName | None = None
    """Where the customer works (IANA, "Asia/Shanghai"): the calendar days its activity
    counts on (left out, the service's HEALTHWATCH_TIMEZONE)."""
    currency: Currency | None = None
    """ISO 4217 code of mrr and arr (left out, the service's HEALTHWATCH_CURRENCY)."""
    cleared: list[ClearableFact] = Field(default_factory=list, max_length=len(CLEARABLE_FACTS))
    """The facts sent as ``null``: their stored values are removed (as JSON Merge Patch
    reads a null), where a newer event set none since. Filled from the nulls sent; a
    null had been taken with 202 and ignored, and a wrong date could not be removed
    (found from outside). Lists (contacts, quotas) are cleared by sending []."""

    @model_validator(mode="before")
    @classmethod
    def _nulls_clear(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        nulls = [name for name in CLEARABLE_FACTS if name in data and data[name] is None]
        if not nulls:
            return data
        given = data.get("cleared")
        kept = [n for n in given if n not in nulls] if isinstance(given, list) else []
        rest = {k: v for k, v in data.items() if k not in nulls}
        return {**rest, "cleared": kept + nulls}


# Why facts taken in are refused when their contract ends before it starts (stored as
# sent, its renewal and tenure read nonsense: found from outside). Checked where facts
# come in (ingest, the accounts CSV), not by the contract: events taken in before the
# check must still be read back from the bus and from history files.
BACKWARDS_CONTRACT = "is before contract_start ({start}): check the two dates"


def backwards_contract(facts: AccountFacts) -> str | None:
    """``BACKWARDS_CONTRACT`` if the facts' contract ends before it starts, else None."""
    start, end = facts.contract_start, facts.contract_end
    return BACKWARDS_CONTRACT.format(start=start) if start and end and end < start else None


class TouchpointKind(StrEnum):
    visit = "visit"
    call = "call"
    meeting = "meeting"
    email = "email"
    qbr = "qbr"


class Touchpoint(EventBase):
    kind: Literal["touchpoint"] = "touchpoint"
    touchpoint_kind: TouchpointKind
    """visit, call, meeting, email or qbr: the cadence rules count them."""
    csm_email: Email | None = None
    """The CSM who made the contact."""
    contact_name: Name | None = None
    """Whom they spoke to."""
    contact_role: ContactRole | None = None
    """decision_maker: counts as contact with the decision maker (EW-14)."""
    notes: Text | None = None
    """What was said, shown on the account's page."""


class NpsResponse(EventBase):
    kind: Literal["nps"] = "nps"
    user_id: Id | None = None
    """Who answered."""
    score: Annotated[int, NotBool] = Field(ge=0, le=10)
    """The answer, 0 to 10: 0–6 a detractor (an alert and a follow-up), 9–10 a promoter."""
    comment: Text | None = None
    """Their words, shown on the NPS page."""


class PaymentStatus(StrEnum):
    succeeded = "succeeded"
    failed = "failed"


class PaymentEvent(EventBase):
    kind: Literal["payment"] = "payment"
    status: PaymentStatus
    """failed counts against health for 30 days (EW-08), with an alert."""
    amount: Money | None = None
    """The amount charged, in ``currency``."""
    currency: Currency | None = None
    """ISO 4217 code of the amount."""
    reason: Text | None = None
    """Why it failed, as the payment provider says."""


Event = Annotated[
    UsageEvent | TicketEvent | AccountFacts | Touchpoint | NpsResponse | PaymentEvent,
    Field(discriminator="kind"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

KINDS: tuple[str, ...] = ("usage", "ticket", "account", "touchpoint", "nps", "payment")


# Times that are events of the sender's world: none may lie past its receipt (ingest:
# now) + max_future_skew. One from the future would make every later event of its
# account "late" and move its day windows past the history.
EVENT_TIMES = ("occurred_at", "created_at", "first_reply_at", "solved_at")


def future_times(event: BaseModel, latest: datetime, skew: timedelta) -> list[dict[str, str]]:
    """A field-level error for each of ``event``'s times past ``latest`` (its receipt +
    ``skew``). Runs for every event the scoring step decodes: it reads only the time
    fields the event's kind has (asking a pydantic model for a field it lacks costs
    ~4 µs in the raised and caught AttributeError)."""
    return [
        future_time(name, skew)
        for name in _times_of(type(event))
        if (value := getattr(event, name)) is not None and value > latest
    ]


def future_time(name: str, skew: timedelta) -> dict[str, str]:
    """The field-level error of a time ``name`` past its receipt + ``skew``."""
    return {
        "field": name,
        "message": f"is more than {skew} in the future; check the sender's clock",
    }


@cache
def _times_of(kind: type[BaseModel]) -> tuple[str, ...]:
    return tuple(name for name in EVENT_TIMES if name in kind.model_fields)
