"""The web dashboard (server-rendered pages under /ui), mounted on the API app.

Pages are Jinja2 templates; charts are drawn by Chart.js (vendored in ``static/``,
MIT-licensed) from JSON the page embeds. Sign-in is with an API key (see ``auth.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.dashboard import (
    activity_page,
    admin_pages,
    alerts_page,
    cases_page,
    export_page,
    import_page,
    nps_page,
    plans_page,
    renewals_page,
    reports_page,
    routes,
    saved_views,
    workload_page,
)
from services.dashboard.auth import (
    BadAddress,
    DashboardContext,
    Forbidden,
    FormTooLarge,
    LoginRequired,
    NotFound,
)
from services.dashboard.import_page import AccountsReader
from services.scoring.queries import is_share
from shared.bus.base import Producer
from shared.config import Settings
from shared.i18n import (
    DEFAULT_LANGUAGE,
    N_,
    format_money,
    format_num,
    format_pct,
    format_quarter,
    format_when,
    translate,
)
from shared.i18n.alert_text import alert_text, rule_name
from shared.web import HANDLED

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent


def mount_dashboard(
    app: FastAPI,
    engine: AsyncEngine,
    settings: Settings,
    producer: Producer | None = None,
    *,
    accounts_reader: AccountsReader | None = None,
) -> None:
    """Add the dashboard's routes to ``app`` (which has ``state.keys``); ``producer``
    publishes the touchpoints people log (none: logging them is refused)."""
    templates = Jinja2Templates(directory=HERE / "templates")
    _add_filters(templates, settings)
    templates.env.globals["_"] = _gettext
    templates.env.globals["_n"] = _ngettext
    templates.env.globals["alert_text"] = _alert_text
    shared_secret = settings.dashboard_secret.get_secret_value()
    app.state.dashboard = DashboardContext(engine, settings, templates)
    if shared_secret:
        # Replicas behind one load balancer must agree on the session cookies and the
        # forms' CSRF tokens (and sessions then outlive a restart).
        app.state.dashboard.secret = shared_secret.encode()
    elif not settings.embedded:
        log.warning(
            "HEALTHWATCH_DASHBOARD_SECRET is not set: dashboard sign-ins hold on this "
            "process only and end when it restarts; set the same value on every replica"
        )
    app.state.dashboard_bus = producer
    # The CSV import's reader (the ingest connectors', handed in by the composition root).
    app.state.accounts_reader = accounts_reader
    # Before ``routes``: its /ui/accounts/{id:path} would take /ui/accounts/{id}/log.
    for pages in (activity_page, alerts_page, saved_views, reports_page, admin_pages):
        app.include_router(pages.router)
    # The workload view and the NPS page (CSM capacity and the NPS loop).
    app.include_router(workload_page.router)
    app.include_router(nps_page.router)
    # Risk cases and tasks (issue 16).
    app.include_router(cases_page.router)
    app.include_router(plans_page.router)  # success plans: the list and the plan forms
    app.include_router(import_page.router)  # account facts from a CRM export
    app.include_router(renewals_page.router)  # renewals, retention, opportunities
    app.include_router(export_page.router)  # accounts, scores and history as files
    app.include_router(routes.router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")
    app.include_router(routes.fallback)
    app.add_exception_handler(LoginRequired, routes.login_required)
    app.add_exception_handler(Forbidden, routes.forbidden)
    app.add_exception_handler(NotFound, routes.not_found)
    app.add_exception_handler(FormTooLarge, routes.form_too_large)
    app.add_exception_handler(BadAddress, routes.bad_address)
    app.state.nul_answer = routes.nul_address  # shared.web.RejectNulBytes asks it
    app.add_exception_handler(RequestValidationError, routes.invalid_address)
    app.add_exception_handler(DBAPIError, routes.unstorable_entry)
    for raised in HANDLED:
        app.add_exception_handler(raised, routes.unavailable)


@pass_context
def _gettext(context: Context, text: str, **values: object) -> str:
    """``_("…")`` in a template: ``text`` in the page's language (``lang``)."""
    return translate(context.get("lang", DEFAULT_LANGUAGE), text, **values)


@pass_context
def _ngettext(context: Context, one: str, many: str, n: int, **values: object) -> str:
    """``_n("1 account", "{n} accounts", n)``: the text for one or for many ("1 accounts
    match" read as a typo), in the page's language, ``{n}`` filled in."""
    return translate(context.get("lang", DEFAULT_LANGUAGE), one if n == 1 else many, n=n, **values)


@pass_context
def _colon(context: Context) -> str:
    """``{{ _("Reports") }}{{ colon() }}``: a label's colon as the page's language writes
    it (a full-width "：" in Chinese, where "报告:" read as a typo)."""
    return "：" if _lang(context).startswith("zh") else ": "


@pass_context
def _list_sep(context: Context) -> str:
    """Between the items of a list in a sentence: "、" in Chinese, ", " in English."""
    return "、" if _lang(context).startswith("zh") else ", "


@pass_context
def _rule_name(context: Context, rule: str) -> str:
    """``{{ a.rule|rule_name }}``: a default rule's name in the page's language."""
    return rule_name(_lang(context), rule)


@pass_context
def _alert_text(context: Context, text: str | None) -> str:
    """An alert's title or summary in the page's language (stored in English)."""
    return alert_text(context.get("lang", DEFAULT_LANGUAGE), text)


def _add_filters(templates: Jinja2Templates, settings: Settings) -> None:
    """Numbers, money and moments as the page's reader writes them (``lang``), on the
    viewer's clock (``zone``, set by ``routes.page``); the service's zone and currency
    where a page names none."""
    templates.env.globals.update(
        zone=settings.zone,
        currency=settings.currency,
        colon=_colon,
        list_sep=_list_sep,
        is_share=is_share,
    )
    templates.env.filters.update(
        money=_money,
        moneys=_moneys,
        pct=_pct,
        num=_num,
        when=_when,
        rule_name=_rule_name,
        quarter=_quarter,
        actor=_actor,
    )


# Who did something, as the stores keep it: an email as it is; "key:<name>" (a key with
# no CSM), "slack:<user id>" (a Slack button) in words. The raw form read as an id
# ("key:dev-simulator" on a Chinese page: found from outside).
ACTOR_WORDS = {"key": N_("key “{name}”"), "slack": N_("Slack user {name}")}


@pass_context
def _actor(context: Context, actor: object) -> str:
    kind, colon, name = str(actor or "").partition(":")
    if colon and kind in ACTOR_WORDS:
        return translate(_lang(context), ACTOR_WORDS[kind], name=name)
    return str(actor or "")


@pass_context
def _quarter(context: Context, quarter: object) -> str:
    return format_quarter(_lang(context), quarter)


def _lang(context: Context) -> str:
    return str(context.get("lang", DEFAULT_LANGUAGE))


@pass_context
def _money(context: Context, value: float | None, currency: str | None = None) -> str:
    """``{{ arr|money }}`` in the service's currency, ``{{ arr|money(facts.currency) }}``
    in an account's own."""
    return format_money(_lang(context), value, currency or context["currency"])


@pass_context
def _moneys(context: Context, amounts: Mapping[str | None, float]) -> str:
    """``{{ totals.money.arr|moneys }}``: one amount per currency, the service's first
    (None is the service's), side by side and never added together."""
    service = str(context["currency"])
    merged: dict[str, float] = {}
    for currency, amount in amounts.items():
        merged[currency or service] = merged.get(currency or service, 0.0) + amount
    shown = sorted(merged, key=lambda c: (c != service, c)) or [service]
    return " · ".join(format_money(_lang(context), round(merged.get(c, 0.0), 2), c) for c in shown)


@pass_context
def _pct(context: Context, value: float | None, digits: int = 0) -> str:
    return format_pct(_lang(context), value, digits)


@pass_context
def _num(context: Context, value: float | None, digits: int = 1) -> str:
    return format_num(_lang(context), value, digits)


@pass_context
def _when(context: Context, value: datetime | date | str | None) -> str:
    """A moment or a day as the reader writes it; a day given as ISO text too (the plan
    API's shapes carry them so), which pages showed as 2026-10-22 beside 2026年12月6日."""
    if isinstance(value, str):  # a day, or a moment ("2026-10-16T09:30:00+00:00")
        value = date.fromisoformat(value) if len(value) <= 10 else datetime.fromisoformat(value)
    return format_when(_lang(context), value, context["zone"])
