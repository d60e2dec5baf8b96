"""Success plans on the real stack (Kafka and PostgreSQL): a new account's plan from its template,
progress from the live measures, the portfolio's plans at risk, editing, a CSM kept to
their portfolio, and the deviation alert stored by the alerts service (in Chinese for a
Chinese reader) and told at the SMTP and Slack stand-ins: at risk, missed, resolved."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.auth import Role, create_key, role_scopes
from shared.config import Settings
from shared.i18n.alert_text import alert_text
from shared.storage.tables import alerts
from tests.support.alerting import alerting_toml, write_alerting
from tests.support.harness import (
    add_account,
    alert_stored,
    alerts_settled,
    running,
    send,
    usage,
    wait_for,
)
from tests.support.standins import Inbox, SlackStandIn, smtp_server

pytestmark = pytest.mark.integration

# The notices' headlines (an email's subject and a Slack post end with them).
TOLD = (
    "] late Inc: milestone 60% of seats activated by day 90 is at risk",
    "] Updated: late Inc: milestone Basic configuration done was missed",
    "] Resolved: late Inc: milestone Used at least 3 days a week is at risk",
)
TICKED = "] Resolved: late Inc: milestone Basic configuration done was missed"


@asynccontextmanager
async def _stand_ins(
    settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[Settings, Inbox, SlackStandIn]]:
    """The settings sending notices to the SMTP and Slack stand-ins, with an alerting
    file of no rules: the plan's alerts alone (a critical rule's alert, such as the
    low use these accounts have, would mute them: the alerts' inhibition)."""
    slack = SlackStandIn()
    with smtp_server() as (inbox, smtp_port):
        file = write_alerting(tmp_path / "alerting.toml", alerting_toml([]))
        update = {
            "alerting_file": file,
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_port,
            "slack_webhook_url": slack.webhook_url,
        }
        async with slack.running():
            yield settings.model_copy(update=update), inbox, slack


async def test_plans_from_templates_progress_alerts_and_edits(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    today = datetime.now(UTC).date()
    bought = (today - timedelta(days=60)).isoformat()
    async with (
        _stand_ins(kafka_settings, tmp_path) as (settings, inbox, slack),
        running(settings) as hw,
        hw.client() as client,
    ):
        for account, owner, slack_id in (
            ("late", "anna@example.com", "U0ANNA"),
            ("other", "carl@example.com", "U0CARL"),
        ):
            await add_account(
                hw,
                account,
                seats=10,
                tier="strategic",
                lifecycle_stage="implementation",
                contract_start=bought,
                email=owner,
                slack=slack_id,
            )
        # One user of ten, every day for three weeks: 10% of the seats by day 60 of 90.
        await send(hw, [usage("late", "u0", days_ago=d) for d in range(21)])
        await alert_stored(hw, "late:plan.seat_activation:1")

        r = await client.get("/v1/accounts/late/plan")
        assert r.status_code == 200, r.text
        plan = r.json()
        assert plan["template"] == "strategic-onboarding" and plan["start_on"] == bought
        by_key = {m["key"]: m for m in plan["milestones"]}
        seats = by_key["seat_activation"]
        assert seats["state"] == "at_risk" and seats["value"] == pytest.approx(0.1)
        assert seats["alert_open"] and 0.6 < seats["time_share"] < 0.7
        assert by_key["weekly_active_days"]["state"] == "achieved"
        assert by_key["kickoff"]["state"] == "missed"  # hand-checked, due on day 30

        listed = (await client.get("/v1/plans", params={"at_risk": "true"})).json()
        # Worst first: "other" has not begun (no use at all), "late" is behind.
        assert [p["account_id"] for p in listed["plans"]] == ["other", "late"]
        assert listed["total"] == 2
        problems = {p["key"] for p in listed["plans"][1]["problems"]}
        assert problems == {"kickoff", "seat_activation"}

        # Tick the hand-checked one; add a measured one for any product; bad input is a 422.
        r = await client.patch("/v1/accounts/late/plan/milestones/kickoff", json={"achieved": True})
        assert r.status_code == 200, r.text
        kickoff = next(m for m in r.json()["milestones"] if m["key"] == "kickoff")
        assert kickoff["state"] == "achieved" and kickoff["achieved_on"] == today.isoformat()
        due = (today + timedelta(days=30)).isoformat()
        body = {
            "title": "Reports weekly",
            "measure": "events_28d[login]",
            "target": 4,
            "due_on": due,
        }
        r = await client.post("/v1/accounts/late/plan/milestones", json=body)
        assert r.status_code == 201, r.text
        assert any(
            m["key"] == "reports-weekly" and m["state"] == "achieved"
            for m in r.json()["milestones"]
        )
        bad = await client.post(
            "/v1/accounts/late/plan/milestones", json={**body, "measure": "no such!"}
        )
        # No measure's name at all is as unknown as a misspelt one, with the names.
        assert bad.status_code == 422 and bad.json()["code"] == "unknown_measure"
        assert "activation_rate" in bad.json()["measures"]
        typo = await client.post(
            "/v1/accounts/late/plan/milestones", json={**body, "measure": "activation_rat"}
        )
        assert typo.status_code == 422 and typo.json()["code"] == "unknown_measure"
        assert "Did you mean activation_rate?" in typo.json()["message"]
        assert "events_28d[event]" in typo.json()["measures"]
        # NUL (PostgreSQL text cannot hold it) and days no plan spans: 422, not a 500.
        for wrong in ({"title": "Reports\x00"}, {"due_on": "0001-01-01"}, {"due_on": "9999-12-31"}):
            bad = await client.post("/v1/accounts/late/plan/milestones", json={**body, **wrong})
            assert bad.status_code == 422, (wrong, bad.text)
        # Due in the past: missed the moment it is saved, its alert out at once (found
        # from outside); a due day moved into the past likewise.
        yesterday = (today - timedelta(days=1)).isoformat()
        past = await client.post(
            "/v1/accounts/late/plan/milestones", json={**body, "due_on": yesterday}
        )
        assert past.status_code == 422 and past.json()["code"] == "due_in_the_past"
        moved = await client.patch(
            "/v1/accounts/late/plan/milestones/reports-weekly", json={"due_on": yesterday}
        )
        assert moved.status_code == 422 and moved.json()["code"] == "due_in_the_past"
        r = await client.post("/v1/accounts/late/plan", json={"template": "nope"})
        assert r.status_code == 422 and r.json()["code"] == "unknown_template"

        # Anna's key sees her plan only.
        anna = await create_key(
            hw.rt.engine, "anna", role_scopes(Role.csm, "anna@example.com"), "anna@example.com"
        )
        headers = {"Authorization": f"Bearer {anna}"}
        assert (await client.get("/v1/accounts/other/plan", headers=headers)).status_code == 404
        mine = (await client.get("/v1/plans", headers=headers)).json()
        assert [p["account_id"] for p in mine["plans"]] == ["late"]

        # The alert went through the alerts service like a rule's, readable in Chinese.
        async with hw.rt.engine.connect() as conn:
            row = (
                await conn.execute(
                    alerts.select().where(alerts.c.alert_id == "late:plan.seat_activation:1")
                )
            ).one()
        # Anna heard each turn of late's plan once, by email and on Slack (DG-10): at
        # risk from the first score (as of the facts, 30 days ago), missed once the use
        # came in, achieved; the ticked milestone resolves on the account's next score.
        await wait_for(lambda: _heard(inbox, slack, *TOLD), timeout=60, what="the notices")
        await send(hw, [usage("late", "u0")])
        await wait_for(lambda: _heard(inbox, slack, TICKED), timeout=60, what="the ticked one")
        await alerts_settled(hw)
    for headline in (*TOLD, TICKED):
        mails = [str(m["To"]) for m in inbox.messages if str(m["Subject"]).endswith(headline)]
        posts = [p.body["text"] for p in slack.delivered() if p.body["text"].endswith(headline)]
        assert mails == ["anna@example.com"] and len(posts) == 1, (headline, mails, posts)
        assert posts[0].startswith("<@U0ANNA> ")
    resolved = next(m for m in inbox.messages if str(m["Subject"]).endswith(TICKED))
    assert f"Achieved on {today.isoformat()}." in resolved.get_body(("plain",)).get_content()
    assert row.status == "firing" and row.owner_email == "anna@example.com"
    assert (
        alert_text("zh-CN", row.title) == "late Inc：里程碑「第 90 天前激活 60% 的席位」有延误风险"
    )


async def _heard(inbox: Inbox, slack: SlackStandIn, *headlines: str) -> bool:
    """Each headline came by email and on Slack."""
    subjects = [str(m["Subject"]) for m in inbox.messages]
    posts = [str(p.body.get("text", "")) for p in slack.delivered()]
    return all(
        any(s.endswith(h) for s in subjects) and any(p.endswith(h) for p in posts)
        for h in headlines
    )
