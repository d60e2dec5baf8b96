"""The print and PDF buttons' target: an account's report for a signed-in viewer.

``/ui/accounts/{account_id}/reports/{kind}`` (``kind``: usage, bimonthly, qbr) answers
the report's HTML, or its PDF with ``?format=pdf``; ``?lang=en|zh-CN`` picks the
language (default: the viewer's dashboard language) and ``?end=YYYY-MM-DD`` the last
day. The viewer's key decides what they may see, as on every page: a CSM only their
own portfolio (404 otherwise, the same as an unknown account).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.dashboard.auth import BadAddress, NotFound, context, viewer
from services.dashboard.routes import language
from services.reports.api import defaults, pdf_link, report_document, today_in
from services.reports.data import KINDS
from services.reports.document import Ask
from services.reports.fmt import Fmt
from services.scoring.queries import Day, account_zone
from shared.i18n import LANGUAGES, N_
from shared.web import ClientError

router = APIRouter(prefix="/ui", include_in_schema=False)

FUTURE_END = N_(
    "The report cannot end on {end}: that day has not begun in the account's time zone. "
    "Pick today or an earlier day."
)


@router.get("/accounts/{account_id:path}/reports/{kind}")
async def account_report_page(
    request: Request,
    account_id: str,
    kind: str,
    format: str | None = None,
    lang: str | None = None,
    end: Day | None = None,
) -> Response:
    """The report as HTML (with its PDF button) or PDF; 404 as for an unknown account."""
    who = await viewer(request)
    if kind not in KINDS:
        raise NotFound(kind)
    pdf = format == "pdf"
    async with context(request).engine.connect() as conn:
        # As the API: the account's zone counts its days (the service's for an account
        # unknown or not the viewer's: the same 400 either way, naming nothing), and a
        # period ending in days to come would show them as days without use.
        zone = await account_zone(conn, account_id, context(request).settings.zone)
        today = today_in(zone)
        if end is not None and end > today:
            raise BadAddress(FUTURE_END, end=end.isoformat())
        ask = Ask(
            account_id,
            kind,
            end or today,
            Fmt(lang if lang in LANGUAGES else language(request), defaults(request).currency),
            zone,
            pdf=pdf,
            pdf_href=None if pdf else pdf_link(request),
        )
        try:
            answer = await report_document(conn, who.key, ask)
        except ClientError as exc:
            if exc.status != 404:
                raise
            raise NotFound(account_id) from exc
    return answer
