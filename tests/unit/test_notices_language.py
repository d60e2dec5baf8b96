"""CSM notices in the team's language (HEALTHWATCH_LANGUAGE): email subject and
bodies, Slack text, blocks and buttons; the alert's own title stays the rule's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.alerts.channels import email as mail
from services.alerts.channels import slack
from shared.contracts.alerts import AlertEvent, Severity
from shared.contracts.notices import Notice, NoticeKind

PUBLIC = "https://hw.example.com"


def alert(**changes: Any) -> AlertEvent:
    base = AlertEvent(
        alert_id="acme:low_activity:1",
        account_id="acme",
        account_name="Acme 有限公司",
        rule="low_activity",
        severity=Severity.critical,
        title="Acme: only 8% of seats active",
        summary="4 of 50 seats active this week.",
        score=21,
        band="red",
        fired_at=datetime(2026, 11, 23, tzinfo=UTC),
        details={"changes": [{"text": "active users fell from 42 to 9"}]},
    )
    return base.model_copy(update=changes)


def texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [text for item in items for text in texts(item)]


def test_email_in_chinese() -> None:
    reminder = Notice(NoticeKind.repeat, [alert()], "k")
    assert (
        mail.subject(reminder, "zh-CN") == "[healthwatch 严重] 提醒：Acme: only 8% of seats active"
    )
    body = mail.text_body(reminder, PUBLIC, "zh-CN")
    for line in ("近 7 天的变化：", "客户：Acme 有限公司（acme）", "健康度：21（红色）"):
        assert line in body
    assert "规则：low_activity   严重程度：严重" in body
    assert "查看客户：https://hw.example.com/ui/accounts/acme" in body
    page = mail.html_body(reminder, PUBLIC, "zh-CN")
    assert '<html lang="zh-CN">' in page and '<th align="left">健康度</th>' in page
    digest = Notice(NoticeKind.digest, [alert(), alert(alert_id="b:x:1")], "d")
    assert mail.subject(digest, "zh-CN") == "[healthwatch] 每日摘要：2 条未处理预警"


def test_email_in_english_by_default() -> None:
    notice = Notice(NoticeKind.fire, [alert(score=None)], "k")
    assert mail.subject(notice) == "[healthwatch critical] Acme: only 8% of seats active"
    assert "Health: n/a" in mail.text_body(notice, PUBLIC)


def test_slack_in_chinese() -> None:
    one = Notice(NoticeKind.fire, [alert()], "k")
    assert slack.fallback_text(one, lang="zh-CN") == "[严重] Acme: only 8% of seats active"
    shown = texts(slack.message_blocks(one, PUBLIC, lang="zh-CN"))
    for text in ("*近 7 天的变化*", "*健康度*", "查看客户", "确认", "暂停提醒 1 天", "无用"):
        assert any(text in t for t in shown), text
    many = Notice(NoticeKind.fire, [alert(alert_id=f"a:{n}:1") for n in range(12)], "k")
    assert slack.fallback_text(many, lang="zh-CN").startswith("12 条预警：")
    shown = texts(slack.message_blocks(many, PUBLIC, lang="zh-CN"))
    assert "*12 条预警*" in shown and "……另有 2 条" in shown
