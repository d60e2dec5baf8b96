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
    # A reminder: its health is now's, its summary from when it fired.
    for line in ("近 7 天的变化：", "客户：Acme 有限公司（acme）", "当前健康度：21（红色）"):
        assert line in body
    assert "规则：活跃度过低   严重程度：严重" in body  # the rule by name, not its id
    assert "查看客户：https://hw.example.com/ui/accounts/acme" in body
    page = mail.html_body(reminder, PUBLIC, "zh-CN")
    assert '<html lang="zh-CN">' in page and '<th align="left">当前健康度</th>' in page
    assert "触发时：" in body
    digest = Notice(NoticeKind.digest, [alert(), alert(alert_id="b:x:1")], "d")
    assert mail.subject(digest, "zh-CN") == "[healthwatch] 每日摘要：2 条未解决预警"


def test_email_in_english_by_default() -> None:
    notice = Notice(NoticeKind.fire, [alert(score=None)], "k")
    assert mail.subject(notice) == "[healthwatch critical] Acme: only 8% of seats active"
    assert "Health: n/a" in mail.text_body(notice, PUBLIC)


def test_slack_in_chinese() -> None:
    one = Notice(NoticeKind.fire, [alert()], "k")
    assert slack.fallback_text(one, lang="zh-CN") == "[严重] Acme: only 8% of seats active"
    shown = texts(slack.message_blocks(one, PUBLIC, lang="zh-CN"))
    for text in ("*近 7 天的变化*", "*健康度*", "查看客户", "确认", "暂停提醒 1 天", "不适用"):
        assert any(text in t for t in shown), text
    many = Notice(NoticeKind.fire, [alert(alert_id=f"a:{n}:1") for n in range(12)], "k")
    assert slack.fallback_text(many, lang="zh-CN").startswith("12 条预警：")
    shown = texts(slack.message_blocks(many, PUBLIC, lang="zh-CN"))
    # As many as Slack's 50 blocks hold (8 alerts of 6 blocks), the rest counted.
    assert "*12 条预警*" in shown and f"<{PUBLIC}/ui/alerts|……另有 4 条>" in shown


def test_alert_title_and_summary_in_chinese() -> None:
    """The rule's English title and summary (a family's "Also: …" line too) reach a
    zh-CN notice in Chinese; English readers get them as stored."""
    a = alert(
        title="Acme: health 31 is red",
        summary="HL-05: health is red. Resolves at 45 (default).\n"
        "Also: only 8% of seats active this week — edge of churn; 6 tickets open.",
    )
    notice = Notice(NoticeKind.fire, [a], "k")
    assert mail.subject(notice, "zh-CN") == "[healthwatch 严重] Acme：健康分 31，红色"
    body = mail.text_body(notice, PUBLIC, "zh-CN")
    assert "HL-05：健康度为红色。回到 45 分（默认）才解除。" in body
    assert "另有：本周仅 8% 的席位活跃——已到流失边缘；6 个工单未解决。" in body
    blocks = " ".join(texts(slack.message_blocks(notice, PUBLIC, lang="zh-CN")))
    assert "Acme：健康分 31，红色" in blocks and "另有：" in blocks
    assert "Acme：健康分 31，红色" in slack.fallback_text(notice, lang="zh-CN")
    assert mail.subject(notice) == "[healthwatch critical] Acme: health 31 is red"
    assert "Also: only 8% of seats" in mail.text_body(notice, PUBLIC)


def test_what_changed_and_a_summary_with_a_semicolon_in_chinese() -> None:
    """The week's changes were English in a zh-CN notice, and a summary holding "; " was
    split and left English around a Chinese semicolon."""
    a = alert(
        summary="DG-05/EW-12: a new decision maker must be re-sold (high danger); open for 30 days.",
        details={
            "changes": [
                {"text": "active users over 7 days fell from 42 to 4, −90%"},
                {"text": "Age of the oldest open ticket, days rose from 8 to 15, +88%"},
            ]
        },
    )
    body = mail.text_body(Notice(NoticeKind.fire, [a], "k"), PUBLIC, "zh-CN")
    assert "近 7 天活跃用户数从 42 降至 4（−90%）" in body
    assert "最早未关闭工单的天数从 8 升至 15（+88%）" in body
    assert "DG-05/EW-12：需要重新向新的决策人证明价值（高危）；保持 30 天。" in body
    shown = texts(slack.message_blocks(Notice(NoticeKind.fire, [a], "k"), PUBLIC, lang="zh-CN"))
    assert any("近 7 天活跃用户数从 42 降至 4" in t for t in shown)
    english = mail.text_body(Notice(NoticeKind.fire, [a], "k"), PUBLIC)
    assert "active users over 7 days fell from 42 to 4, −90%" in english


def test_every_channel_says_what_to_do_next() -> None:
    """An alert explained what happened, never what to do (a CSM's review): the rule's
    next step goes with it, in the recipient's language; none is said when there is none."""
    step = (
        "Call the account's admin today: find who stopped using it and why, then agree a"
        " rescue plan (training, a re-launch to the teams) with dates."
    )
    notice = Notice(NoticeKind.fire, [alert(details={"next_step": step})], "k")
    assert f"Next step: {step}" in mail.text_body(notice, PUBLIC)
    assert "下一步：今天就联系客户的管理员" in mail.text_body(notice, PUBLIC, "zh-CN")
    assert "<p>下一步：今天就联系客户的管理员" in mail.html_body(notice, PUBLIC, "zh-CN")
    blocks = slack.message_blocks(notice, PUBLIC, lang="zh-CN")
    assert any(t.startswith("下一步：今天就联系客户的管理员") for t in texts(blocks))
    bare = Notice(NoticeKind.fire, [alert()], "k")
    assert "Next step" not in mail.text_body(bare, PUBLIC)
    # Email has no buttons: it links the alert's page, which has them.
    page = f"{PUBLIC}/ui/alerts/acme%3Alow_activity%3A1"
    assert f"Acknowledge, snooze or resolve: {page}" in mail.text_body(bare, PUBLIC)
    assert f'<a href="{page}">确认、暂停提醒或解决</a>' in mail.html_body(bare, PUBLIC, "zh-CN")
    # A resolved alert's notice has nothing left to act on.
    ended = Notice(NoticeKind.resolve, [alert(status="resolved")], "k")
    assert "/ui/alerts/" not in mail.text_body(ended, PUBLIC) + mail.html_body(ended, PUBLIC)
