"""The reports' words: what the customer reads, in English and Chinese, without our
internal labels, with every section of each kind, and a print layout that keeps each
heading with its chart."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.reports import api, content, render
from services.reports.api import wants_pdf
from services.reports.data import Figures, ModuleUse, Report
from services.reports.fmt import Fmt
from shared.i18n import catalog

END = date(2026, 12, 3)
ALL_CAUSES = [
    "wrong_fit",
    "decision_maker_change",
    "unclear_value",
    "slow_go_live",
    "long_unresolved_tickets",
    "champion_change",
    "unmet_requests",
]
WEAK = {
    "active_user_share_7d": 0.3,
    "active_days_7d": 2,
    "core_module_use_28d": 0.67,
    "oldest_open_ticket_days": 40,
    "nps_latest": 5,
    "payment_failed_30d": 1,
    "days_since_touchpoint": 60,
    "depth_level": 1,
    "app_share_28d": 0.1,
}
STRONG = {
    "active_user_share_7d": 0.9,
    "active_days_7d": 5,
    "core_module_use_28d": 1.0,
    "oldest_open_ticket_days": 0,
    "nps_latest": 9,
    "payment_failed_30d": 0,
    "days_since_touchpoint": 10,
}


FULL = Figures(18, 19, 20, 900, 80, 90, 5)


def ticket(n: int, status: str, days_ago: int, solved_ago: int | None = None) -> dict[str, Any]:
    opened = END - timedelta(days=days_ago)
    solved = END - timedelta(days=solved_ago) if solved_ago is not None else None
    return {
        "ticket_id": f"T{n}",
        "priority": "high",
        "type": "bug",
        "status": status,
        "open": status in ("open", "pending"),
        "opened": opened,
        "solved": solved,
        "age_days": ((solved or END) - opened).days,
    }


VARIED = [
    {**ticket(n, status, 10), "type": kind, "priority": priority}
    for n, (status, kind, priority) in enumerate(
        [
            ("closed", "question", "low"),
            ("open", "feature_request", "normal"),
            ("open", "other", "urgent"),
        ]
    )
]


def report(kind: str = "qbr", **changes: Any) -> Report:
    base = Report(
        kind=kind,  # type: ignore[arg-type]
        account_id="acme-01",
        name="Acme <Trading> Co",
        tier="non-focus",
        start=END - timedelta(days=89),
        end=END,
        figures=Figures(8, 9, 20, 640, 50, 33.5, 3),
        tier_average=Figures(5, 7, 15, 400, 40, 20, 2),
        tier_accounts=12,
        modules=[ModuleUse("custom_objects", 300, 40), ModuleUse("reports", 200, 30)],
        weekly_active_users=[(END - timedelta(days=7 * k), 5 + k) for k in range(12, -1, -1)],
        scores=[(END - timedelta(days=k), 40 + k % 30, "yellow") for k in range(0, 90, 3)],
        tickets=[ticket(1, "open", 40), ticket(2, "solved", 20, 3), ticket(3, "pending", 5)],
        tickets_opened=3,
        tickets_solved=1,
        facts={
            "plan": "Pro",
            "arr": 1_200_000,
            "contract_start": "2025-12-01",
            "contract_end": (END + timedelta(days=60)).isoformat(),
        },
        current={
            "score": 35,
            "band": "red",
            "inputs": dict(WEAK),
            "danger_causes": list(ALL_CAUSES),
        },
    )
    return replace(base, **changes)


@pytest.fixture(autouse=True)
def stub_charts(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Words only: matplotlib's half second per chart is spent once, in the layout test."""
    if "layout" not in request.node.name:
        for chart in ("_weekly_svg", "_score_svg"):
            monkeypatch.setattr(render, chart, lambda r, f: "<svg></svg>")


def text_of(page: str) -> str:
    """What a reader sees: the page without tags, styles and charts."""
    page = re.sub(r"<(style|svg)\b.*?</\1>", " ", page, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


# What must never reach a customer: our segment and risk labels and raw measure ids.
INTERNAL = re.compile(
    r"non-focus|strategic|enterprise tier|danger|\bband\b|\bred\b|\byellow\b|"
    r"[a-z]+_[a-z_0-9]+|churn|tier",
    re.I,
)
INTERNAL_ZH = ("危险", "流失", "红", "黄", "层级", "非重点")


@pytest.mark.parametrize("kind", ["usage", "bimonthly", "qbr"])
def test_no_internal_label_reaches_the_customer(kind: str) -> None:
    for r in (report(kind), report(kind, current={"inputs": STRONG, "danger_causes": []})):
        english = text_of(render.render_html(r, Fmt("en")))
        assert not INTERNAL.findall(english), INTERNAL.findall(english)
        chinese = text_of(render.render_html(r, Fmt("zh-CN")))
        assert not [w for w in INTERNAL_ZH if w in chinese]
        assert "Acme &lt;Trading&gt; Co" in render.render_html(r, Fmt("en"))  # escaped


def test_the_kinds_are_distinct_with_their_sections() -> None:
    headings = {
        kind: re.findall(r"<h2>(.*?)</h2>", render.render_html(report(kind), Fmt("en")))
        for kind in ("usage", "bimonthly", "qbr")
    }
    assert headings["qbr"][:2] == ["Summary", "Goals and outcomes"]
    for section in (
        "Usage against your plan",
        "Requests and issues",
        "Recommendations for the next quarter",
        "Renewal",
    ):
        assert section in headings["qbr"]
    assert "Best practices for your team" in headings["bimonthly"]
    assert "Goals and outcomes" not in headings["usage"] + headings["bimonthly"]
    assert "Renewal" not in headings["usage"] + headings["bimonthly"]
    assert len({tuple(h) for h in headings.values()}) == 3
    # The bi-monthly report lists every request and issue with its status (RP-05); the
    # others the open ones.
    bimonthly = render.render_html(report("bimonthly"), Fmt("en"))
    assert "<td>T2</td>" in bimonthly and "Resolved" in bimonthly
    assert "<td>T2</td>" not in render.render_html(report("usage"), Fmt("en"))


def test_the_qbr_speaks_of_the_account_itself() -> None:
    f = Fmt("en")
    r = report(current={"inputs": WEAK, "danger_causes": ["decision_maker_change"]})
    recs = content.recommendations(r, f)
    assert len(recs) == content.MAX_RECOMMENDATIONS  # the strongest few (RP-13)
    assert recs[0].startswith("Your renewal is on February 1, 2027")
    assert recs[1].startswith("We would like to meet your new leadership")
    assert recs[2].startswith("11 of your 20 purchased seats have never been used")
    goals = {g.name: g for g in content.goals(r, f)}
    assert goals["Purchased seats activated"].actual == "9 of 20 (45%)"
    assert goals["Purchased seats activated"].met is False
    assert goals["Days with use in the last week"].met is False
    # An issue opened today is open all the same.
    young = report(current={"inputs": {**WEAK, "oldest_open_ticket_days": 0}})
    oldest = {g.name: g for g in content.goals(young, f)}["Oldest open issue"]
    assert (oldest.actual, oldest.met) == ("0 days", True)
    renewal = content.renewal(r, f)
    assert (renewal.date, renewal.status) == (
        "February 1, 2027",
        "Due in 60 days: we will be in touch every month until then.",
    )
    page = render.render_html(r, f)
    assert "CN¥1,200,000" in page and "<td>Plan</td><td>Pro</td>" in page
    # A healthy account is told so, with a next step; no renewal date is said plainly.
    well = report(current={"inputs": STRONG, "danger_causes": []}, facts={}, figures=FULL)
    (only,) = content.recommendations(well, f)
    assert "full use" in only
    assert content.renewal(well, f).status.startswith("No renewal date on record")
    assert all(g.met for g in content.goals(well, f))
    ended = report(facts={"contract_end": "2026-11-01", "lifecycle_stage": "churned"})
    assert content.renewal(ended, f).status == "The contract ended on November 1, 2026."


def test_seats_purchased_is_a_fact_not_a_judgement() -> None:
    page = render.render_html(report(), Fmt("en"))
    plan = page[page.index("Usage against your plan") :]
    plan = plan[: plan.index("</section>")]
    assert "<td>Seats purchased</td><td class=n>20</td>" in plan
    assert "above" not in plan and "below" not in plan and 'class="met' not in plan
    comparison = page[page.index("Your usage against comparable customers") :]
    assert "Seats purchased" not in comparison[: comparison.index("</section>")]


def test_chinese_report_formats_with_babel() -> None:
    r = report()
    page = render.render_html(r, Fmt("zh-CN"))
    assert '<html lang="zh-CN">' in page
    assert "季度业务回顾" in page and "续约" in page
    assert "¥1,200,000" in page and "2027年2月1日" in page
    assert "2026年9月5日" in page  # the period's first day


def test_every_text_has_its_chinese(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every text a report asks for, over all kinds and branches, is in the catalog."""
    asked: set[str] = set()
    real = Fmt.t

    def recording(self: Fmt, text: str, **values: object) -> str:
        asked.add(text)
        return real(self, text, **values)

    monkeypatch.setattr(Fmt, "t", recording)
    well = {"inputs": STRONG, "danger_causes": []}
    for kind in ("usage", "bimonthly", "qbr"):
        for r in (
            report(kind),
            report(kind, current=well, facts={}, modules=[], tickets=[], figures=FULL),
            report(kind, figures=Figures(), tickets=VARIED, current={}),
            report(kind, facts={"contract_end": "2026-01-01"}),
            report(kind, facts={"contract_end": "2028-01-01", "mrr": 10}),
        ):
            render.render_html(r, Fmt("zh-CN"), pdf_href="?format=pdf")
    missing = sorted(asked - set(catalog("zh-CN")))
    assert not missing, missing


def test_print_layout_keeps_headings_with_their_charts() -> None:
    page = render.render_html(report(), Fmt("en"))
    assert "size: A4" in page
    assert re.search(r"h1, h2, h3 \{ break-after: avoid; page-break-after: avoid; \}", page)
    # Each chart sits in one unbreakable section with its heading.
    for heading in ("Active users per week", "Health score"):
        section = page[page.rindex('<section class="keep">', 0, page.index(heading)) :]
        assert section.index("<svg") < section.index("</section>")
    assert "break-inside: avoid" in page
    assert page.count("<svg") == 2
    # Ids unique in the document, each reference to one of them (WeasyPrint logged
    # "Anchor defined twice" 82 times for one PDF: the charts repeated matplotlib's).
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)) and ids
    refs = re.findall(r'(?:url\(#|href="#)([^)"]+)', page)
    assert refs and set(refs) <= set(ids)


def test_pdf_is_asked_for_by_format_or_accept() -> None:
    assert wants_pdf("pdf", None) and not wants_pdf("html", "application/pdf")
    assert wants_pdf(None, "application/pdf") and not wants_pdf(None, None)
    assert wants_pdf(None, "application/pdf, text/html;q=0.9")
    assert not wants_pdf(None, "text/html,application/xhtml+xml,*/*;q=0.8")  # a browser


def test_default_last_day_is_today_in_the_service_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 17:00 UTC on Dec 1 it is already Dec 2 in Shanghai: a Shanghai team's report
    ends on Dec 2, whatever the server's own calendar says."""
    monkeypatch.setattr(api, "utcnow", lambda: datetime(2026, 12, 1, 17, tzinfo=UTC))
    assert api.today_in(ZoneInfo("Asia/Shanghai")) == date(2026, 12, 2)
    assert api.today_in(UTC) == date(2026, 12, 1)


def test_an_average_that_would_read_as_the_value_gets_a_digit_more() -> None:
    """ "Days with use 8 | 8 | 105% of average" (found from outside)."""
    rows = render._usage_rows(Figures(active_days=8), Figures(active_days=7.6), Fmt())
    (days,) = [row for row in rows if row["label"] == "Days with use"]
    assert (days["value"], days["average"]) == ("8", "7.6")
    assert days["position"] == "105% of average"
    same = render._usage_rows(Figures(active_days=8), Figures(active_days=8), Fmt())
    assert [r["average"] for r in same if r["label"] == "Days with use"] == ["8"]


def test_one_day_is_not_days() -> None:
    page = render.render_html(
        report(kind="qbr", current={"inputs": {"oldest_open_ticket_days": 1}}), Fmt()
    )
    shown = text_of(page)
    assert not re.search(r"\b1 days", shown) and re.search(r"\b1 day\b", shown)


def test_a_single_user_account_reads_right_without_seats() -> None:
    """Found from outside, on a single-user app: "1 people used the product … on 1
    days", and a caption naming a seats line the chart did not draw."""
    one = report(kind="usage", figures=Figures(1, 1, None, 3, 1, 0.2, 1))
    shown = text_of(render.render_html(one, Fmt()))
    assert "Active users in the period: 1; days with use: 1;" in shown
    assert not re.search(r"\b1 (people|days)\b", shown)
    assert "Dashed line" not in shown and "Bars: people who used the product each week." in shown
    seated = text_of(render.render_html(report(kind="usage"), Fmt()))
    assert "Dashed line: seats purchased." in seated


def test_a_pdf_layout_logs_no_warning_of_its_own_charts(caplog: pytest.LogCaptureFixture) -> None:
    """One QBR PDF wrote 82 "Anchor defined twice" warnings (the charts repeated
    matplotlib's ids) and 203 lines on the charts' SVG styles to the log (found from
    outside)."""
    pytest.importorskip("weasyprint")
    from services.reports.pdf import render_pdf

    with caplog.at_level("INFO"):
        pdf = render_pdf(render.render_html(report(), Fmt("en")))
    assert pdf.startswith(b"%PDF")
    noisy = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("weasyprint") and r.levelname != "INFO"  # its progress: quiet
    ]
    assert noisy == []
