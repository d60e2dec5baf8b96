"""The portfolio page: accounts searched, filtered, sorted and paged; the alerts to do
(``alert_list.py``) and renewals coming up, each with its true total.

The filters are the read API's (``services.scoring.queries.Filters`` and
``portfolio_rows``), so the page and ``GET /v1/accounts`` agree on who sees what, on
scores, ARR and the filters' meaning. The page's state is its query string (``q``,
the filters, ``sort``, ``dir``, ``page``): a view can be bookmarked, shared or saved.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.dashboard.alert_list import VIEWS, AlertFilters, count_alerts, list_alerts
from services.dashboard.auth import Viewer
from services.dashboard.saved_views import saved_views
from services.scoring.queries import (
    DEFAULT_CURRENCY,
    MONEY_SORTS,
    SORTS,
    Filters,
    account_zones,
    money_group,
    portfolio_rows,
    portfolio_totals,
)
from shared.contracts.events import LifecycleStage, Tier
from shared.storage.db import among
from shared.storage.tables import account_health, accounts, health_daily
from shared.web import whole_number

# Renewals within this many days are "coming up" (the handbook's longest notice).
RENEWAL_HORIZON_DAYS = 90
# Rows per portfolio page: a screen or two, not the 12,000-pixel page of every account.
PAGE_SIZE = 25
# The home page previews this many open alerts and renewals; their totals link on.
PREVIEW = 10
# "change" is the score's move over this many days.
CHANGE_DAYS = 7
BANDS = ("red", "yellow", "green")
DANGER_LEVELS = ("high", "normal", "mild", "none")
LIFECYCLE_STAGES = tuple(s.value for s in LifecycleStage)
TIERS = tuple(t.value for t in Tier)
# The order of the longest renewal filter the API takes.
MAX_RENEWAL_DAYS = 3650


def _value(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: r[key]


# What each order sorts by (None: unknown, listed last either way) and whether it runs
# descending by default: the read API's direction for its orders (``SORTS``).
SORT_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "risk_value": _value("risk_value"),
    "score": _value("score"),
    "change": _value("change"),
    "arr": _value("arr"),
    "renewal": _value("days_to_renewal"),
    "name": lambda r: (r["name"] or r["account_id"]).lower(),
}
DESCENDING = {name: SORTS[name][1] for name in SORTS} | {"arr": True, "change": False}


@dataclass(frozen=True)
class PortfolioQuery:
    """What the portfolio page shows, read from and written to its query string."""

    q: str = ""
    filters: Filters = field(default_factory=Filters)
    sort: str = "risk_value"
    desc: bool = True
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, str], may_pick_csm: bool) -> PortfolioQuery:
        """The query ``params`` ask for; a value the page does not offer is ignored (a
        hand-edited link shows the unfiltered portfolio rather than an error)."""
        sort = params.get("sort", "")
        sort = sort if sort in SORT_KEYS else "risk_value"
        direction = params.get("dir", "")
        return cls(
            q=text_param(params.get("q"), 200),
            filters=Filters(
                band=_one_of(params.get("band"), BANDS),
                danger_level=_one_of(params.get("danger_level"), DANGER_LEVELS),
                tier=_one_of(params.get("tier"), TIERS),
                csm=text_param(params.get("csm"), 320) or None if may_pick_csm else None,
                lifecycle_stage=_one_of(params.get("lifecycle_stage"), LIFECYCLE_STAGES),
                renewal_within_days=_whole(params.get("renewal_within_days"), MAX_RENEWAL_DAYS),
            ),
            sort=sort,
            desc=direction == "desc" if direction in ("asc", "desc") else DESCENDING[sort],
            page=_whole(params.get("page"), 10**6) or 1,
        )

    def pairs(self) -> list[tuple[str, str]]:
        """The query string's fields, defaults left out (short, stable links)."""
        out = [("q", self.q)] if self.q else []
        for f in fields(self.filters):
            value = getattr(self.filters, f.name)
            if value is not None:
                out.append((f.name, str(value)))
        if self.sort != "risk_value" or self.desc != DESCENDING["risk_value"]:
            out += [("sort", self.sort), ("dir", "desc" if self.desc else "asc")]
        if self.page > 1:
            out.append(("page", str(self.page)))
        return out

    def link(self, **changes: Any) -> str:
        """The page's URL with ``changes`` (a new filter or order goes back to page 1)."""
        if "page" not in changes:
            changes["page"] = 1
        query = urllib.parse.urlencode(replace(self, **changes).pairs())
        return "/ui/" + (f"?{query}" if query else "")

    def cleared(self) -> str:
        """The link without search and filters (the order kept)."""
        return self.link(q="", filters=Filters())

    def sorted_by(self, sort: str) -> str:
        """The link of a column heading: sort by it, or flip the direction if it is the
        order already."""
        desc = not self.desc if sort == self.sort else DESCENDING[sort]
        return self.link(sort=sort, desc=desc)

    @property
    def filtered(self) -> bool:
        return bool(self.q) or self.filters != Filters()


def text_param(value: str | None, chars: int) -> str:
    """A free-text parameter, trimmed to ``chars``; empty when it holds a control
    character (PostgreSQL refuses NUL in text, and no name or id holds one)."""
    value = (value or "").strip()[:chars]
    return "" if any(ord(c) < 32 or ord(c) == 127 for c in value) else value


def _one_of(value: str | None, allowed: tuple[str, ...]) -> str | None:
    return value if value in allowed else None


def _whole(value: str | None, most: int) -> int | None:
    number = whole_number(value.strip() if value is not None else None, 7)
    return None if number is None else min(number, most)


def search(rows: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """Rows whose name or id holds ``text`` (case-insensitive)."""
    needle = text.casefold()
    if not needle:
        return rows
    return [r for r in rows if needle in f"{r['account_id']}\n{r['name'] or ''}".casefold()]


def order(
    rows: list[dict[str, Any]], sort: str, desc: bool, currency: str | None = None
) -> list[dict[str, Any]]:
    """Rows in the order asked; those without a value (no score, no contract end) last
    in either direction, and ties by name, so pages never shuffle. ``currency``: the
    service's (``MONEY_SORTS``)."""
    key = SORT_KEYS[sort]
    by_name = sorted(rows, key=SORT_KEYS["name"])
    known = sorted((r for r in by_name if key(r) is not None), key=key, reverse=desc)
    unknown = [r for r in by_name if key(r) is None]
    if sort in MONEY_SORTS:  # stable: each currency keeps the order by amount
        known.sort(key=lambda r: money_group(r.get("currency"), currency))
    return known + unknown


@dataclass(frozen=True)
class Page:
    """One page of a longer list and where it stands in it."""

    rows: list[dict[str, Any]]
    total: int
    number: int
    size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def first(self) -> int:
        return (self.number - 1) * self.size + 1 if self.total else 0

    @property
    def last(self) -> int:
        return min(self.total, self.number * self.size)


def paginate(rows: list[dict[str, Any]], number: int, size: int = PAGE_SIZE) -> Page:
    """Page ``number`` of ``rows`` (a page past the end shows the last one)."""
    number = max(1, min(number, max(1, -(-len(rows) // size))))
    start = (number - 1) * size
    return Page(rows[start : start + size], len(rows), number, size)


async def score_changes(
    conn: AsyncConnection, ids: list[str], today: date, zone: tzinfo, days: int = CHANGE_DAYS
) -> dict[str, int]:
    """Each account's score ``days`` ago (the newest daily score on or before that day),
    for accounts scored then and now, whose usage had begun by then: the score of a new
    account's facts alone, before any use, made its first week's "change" a jump of
    tens of points (found from outside)."""
    h = health_daily.c
    then = today - timedelta(days=days)
    newest = (
        select(h.account_id, func.max(h.day).label("day"))
        .where(h.day <= then, among(conn, h.account_id, ids))
        .group_by(h.account_id)
        .subquery()
    )
    q = (
        select(h.account_id, h.score, h.day, account_health.c.first_seen_at)
        .join(newest, (newest.c.account_id == h.account_id) & (newest.c.day == h.day))
        .join(account_health, account_health.c.account_id == h.account_id)
    )
    rows = (await conn.execute(q)).all()
    # A day of scores is the account's own (its zone, else the service's ``zone``).
    zones = await account_zones(conn, [r.account_id for r in rows], zone)
    return {
        account_id: score
        for account_id, score, day, first_use in rows
        if score is not None
        and first_use is not None
        and first_use.astimezone(zones[account_id]).date() <= day
    }


async def portfolio(
    conn: AsyncConnection, who: Viewer, today: date, currency: str | None = None
) -> list[dict[str, Any]]:
    """Every account the viewer may see, riskiest and most valuable first."""
    rows = await portfolio_rows(conn, who.key, Filters(), today)
    return order(rows, "risk_value", True, currency)


async def portfolio_rows_of(
    conn: AsyncConnection,
    who: Viewer,
    query: PortfolioQuery,
    today: date,
    currency: str | None = None,
    zone: tzinfo = UTC,
) -> list[dict[str, Any]]:
    """Every account ``query`` selects (search and filters), with its score's change,
    in the query's order: the page's rows before paging, and its list as a file."""
    rows = search(await portfolio_rows(conn, who.key, query.filters, today), query.q)
    changes = await score_changes(conn, [r["account_id"] for r in rows], today, zone)
    for r in rows:
        before = changes.get(r["account_id"])
        r["change"] = r["score"] - before if before is not None and r["score"] is not None else None
    return order(rows, query.sort, query.desc, currency)


async def portfolio_page(
    conn: AsyncConnection,
    who: Viewer,
    query: PortfolioQuery,
    today: date,
    currency: str | None = None,
    zone: tzinfo = UTC,
) -> tuple[Page, dict[str, Any]]:
    """The page of accounts ``query`` asks for, and totals over every matching one."""
    rows = await portfolio_rows_of(conn, who, query, today, currency, zone)
    totals = portfolio_totals(rows)
    totals["money"] = arr_totals(totals)
    return paginate(rows, query.page), totals


def arr_totals(totals: dict[str, Any]) -> dict[str, Any]:
    """From ``portfolio_totals``: ARR and ARR at risk (red health) per currency (None:
    the service's), never added across currencies, over the customers whose ARR is
    known; ``known`` of ``count`` says how many that is of the customers (an unknown ARR
    is not 0; a churned account is no customer)."""
    by = {
        None if currency == DEFAULT_CURRENCY else currency: sums
        for currency, sums in totals["arr_by_currency"].items()
    }
    return {
        "arr": {c: sums["arr"] for c, sums in by.items()},
        "at_risk": {c: sums["arr_at_risk"] for c, sums in by.items() if sums["arr_at_risk"]},
        "known": totals["arr_accounts_known"],
        "count": totals["accounts"] - totals["churned"],
    }


def renewals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accounts whose contract ends within the horizon, soonest first; churned ones are
    left out (nothing to renew, as ``/v1/renewals`` leaves them out)."""
    due = [
        r
        for r in rows
        if r["days_to_renewal"] is not None
        and 0 <= r["days_to_renewal"] <= RENEWAL_HORIZON_DAYS
        and r["lifecycle_stage"] != "churned"
    ]
    return sorted(due, key=lambda r: (r["days_to_renewal"], -(r["arr"] or 0)))


async def home(
    conn: AsyncConnection,
    who: Viewer,
    query: PortfolioQuery,
    today: date,
    now: datetime,
    currency: str | None = None,
    zone: tzinfo = UTC,
) -> dict[str, Any]:
    """The home page's values; ``currency`` and ``zone``: the service's."""
    listing, totals = await portfolio_page(conn, who, query, today, currency, zone)
    alerts_total, alert_rows = await list_alerts(conn, who, now, VIEWS["to_do"], PREVIEW)
    open_total = await count_alerts(conn, who, now, AlertFilters())
    due = renewals(await portfolio(conn, who, today, currency))
    return {
        "query": query,
        "listing": listing,
        "totals": totals,
        "alerts": alert_rows,
        "alerts_total": alerts_total,
        "alerts_open": open_total,
        "renewals": due[:PREVIEW],
        "renewals_total": len(due),
        "renewals_link": query.link(
            q="",
            filters=Filters(renewal_within_days=RENEWAL_HORIZON_DAYS),
            sort="renewal",
            desc=False,
        ),
        "horizon": RENEWAL_HORIZON_DAYS,
        "options": await _options(conn, who),
        "views": await _views(conn, who, query),
        "current_query": urllib.parse.urlencode(replace(query, page=1).pairs()),
    }


async def _views(conn: AsyncConnection, who: Viewer, query: PortfolioQuery) -> list[dict[str, Any]]:
    """The viewer's saved views as links (parsed like any URL), the one shown marked."""
    may_pick_csm = who.key.portfolio_of is None
    out = []
    for view in await saved_views(conn, who):
        saved = PortfolioQuery.parse(dict(urllib.parse.parse_qsl(view["query"])), may_pick_csm)
        current = saved == replace(query, page=1)
        out.append({"name": view["name"], "link": saved.link(), "current": current})
    return out


async def _options(conn: AsyncConnection, who: Viewer) -> dict[str, tuple[str, ...]]:
    """The values the filter menus offer; the CSMs only to a key that sees them all."""
    csms = tuple(await csm_emails(conn, who))
    return {
        "band": BANDS,
        "danger_level": DANGER_LEVELS,
        "lifecycle_stage": LIFECYCLE_STAGES,
        "tier": TIERS,
        "csm": csms,
    }


async def csm_emails(conn: AsyncConnection, who: Viewer) -> list[str]:
    """The CSMs owning accounts, for a viewer who may pick one (none for a CSM's key)."""
    if who.key.portfolio_of is not None:
        return []
    q = select(accounts.c.owner_email).where(accounts.c.owner_email.is_not(None)).distinct()
    return sorted(e for (e,) in await conn.execute(q))
