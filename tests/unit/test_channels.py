"""Delivery channels against real servers on loopback (a Slack stand-in, aiosmtpd)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from pydantic import SecretStr

from services.alerts.channels import DeliveryError
from services.alerts.channels.base import MAX_RETRY_AFTER_S, retry_after
from services.alerts.channels.email import EmailChannel, message_id
from services.alerts.channels.email import subject as email_subject
from services.alerts.channels.email import text_body as email_text_body
from services.alerts.channels.slack import MAX_BLOCKS, SlackChannel, fallback_text, message_blocks
from services.alerts.channels.text import headline, without_url_secrets
from services.alerts.channels.webhook import WebhookChannel, webhook_signature
from services.alerts.outbox import _one_notice
from services.alerts.routing import (
    addresses,
    escalation_recipients,
    recipients,
    unowned_reach,
)
from shared.alerting.schema import Recipient, Routing, default_alerting_source, parse_alerting
from shared.config import Settings
from shared.contracts.alerts import AlertEvent, Severity
from shared.contracts.events import Owner
from shared.contracts.notices import Notice
from tests.support.standins import SlackStandIn, smtp_server

ALERT = AlertEvent(
    alert_id="acme:low_activity:1",
    account_id="acme",
    account_name="Acme <Corp>",
    rule="low_activity",
    severity=Severity.critical,
    title="Acme: only 8% of seats active",
    summary="4 of 50 purchased seats were active.",
    score=21,
    band="red",
    owner=Owner(email="anna@example.com", slack_id="U0ANNA"),
    tier="strategic",
    sales_owner=Owner(email="bob@example.com"),
    fired_at=datetime(2026, 11, 23, tzinfo=UTC),
    details={"changes": [{"text": "active users over 7 days fell from 42 to 4, −90%"}]},
)
FIRE = Notice("fire", [ALERT], "acme:low_activity:1/fire")
ANNA = Recipient(email="anna@example.com", slack="U0ANNA")


def settings(**values: object) -> Settings:
    # The stand-in SMTP server speaks plain SMTP (production defaults to STARTTLS).
    values = {"smtp_starttls": False, **values}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


async def test_slack_web_api_posts_to_the_owner_with_buttons_and_surfaces_rate_limits() -> None:
    slack = SlackStandIn()
    slack.script.append((429, {"Retry-After": "7"}))
    async with slack.running():
        channel = SlackChannel(
            settings(slack_bot_token=SecretStr("xoxb-test"), slack_api_url=slack.api_url)
        )
        destination = channel.address(ANNA)
        assert destination == "U0ANNA"
        with pytest.raises(DeliveryError) as err:
            await channel.send(FIRE, destination)
        assert err.value.retry_after_s == 7
        await channel.send(FIRE, destination)
    assert [r.path for r in slack.requests] == ["/api/chat.postMessage"] * 2
    posted = slack.requests[1]
    assert posted.body["channel"] == "U0ANNA"
    assert posted.headers["authorization"] == "Bearer xoxb-test"
    assert posted.body["text"].startswith("[critical]")
    blocks = posted.body["blocks"]
    if isinstance(blocks, str):  # form-encoded by the SDK
        blocks = orjson.loads(blocks)
    buttons = [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert buttons == ["open_account", "ack", "snooze_1d", "not_useful"]
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    assert any("fell from 42 to 4, −90%" in t for t in texts)


async def test_slack_finds_what_it_posted_by_the_notices_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A message carries its notices' keys (Slack's message metadata), so an attempt
    whose outcome was lost can look in the conversation before sending again."""
    other = ALERT.model_copy(update={"alert_id": "acme:nps_detractor:1", "title": "Acme: NPS 3"})
    second = Notice("fire", [other], "acme:nps_detractor:1/fire")
    slack = SlackStandIn()
    since = datetime.now(UTC)
    async with slack.running():
        web = SlackChannel(
            settings(slack_bot_token=SecretStr("xoxb-test"), slack_api_url=slack.api_url)
        )
        assert await web.posted([FIRE.key], "U0ANNA", since) == set()
        await web.send(_one_notice([FIRE, second]), "U0ANNA")  # one message, two notices
        await web.send(FIRE, "C0SHARED")
        keys = [FIRE.key, second.key, "acme:other:1/fire"]
        assert await web.posted(keys, "U0ANNA", since) == {FIRE.key, second.key}
        assert await web.posted(keys, "C0SHARED", since) == {FIRE.key}
        # Before the window: not this attempt's message.
        later = datetime.fromtimestamp(time.time() + 3600, UTC)
        assert await web.posted(keys, "C0SHARED", later) == set()
        reads = len(slack.requests)
        # A channel by name cannot be read back; an incoming webhook cannot read at all.
        assert await web.posted(keys, "#cs-alerts", since) is None
        hook = SlackChannel(settings(slack_webhook_url=slack.webhook_url))
        assert await hook.posted(keys, "U0ANNA", since) is None
        assert len(slack.requests) == reads
        slack.read_error = "missing_scope"
        assert await web.posted(keys, "U0ANNA", since) is None
    assert "im:history" in caplog.text and "sent again" in caplog.text
    assert slack.posts_in("U0ANNA")[0]["metadata"]["event_type"] == "healthwatch_notice"


async def test_a_slack_failure_says_whether_the_message_may_be_out() -> None:
    """Refused (a 429) or never connected: nothing was posted. A 5xx, or Slack's own
    internal_error: it may have been, and the next attempt looks first."""
    slack = SlackStandIn()
    slack.script.extend([(429, {"Retry-After": "1"}), (500, {})])
    async with slack.running():
        web = SlackChannel(
            settings(slack_bot_token=SecretStr("xoxb-test"), slack_api_url=slack.api_url)
        )
        unsure = []
        for _ in range(2):
            with pytest.raises(DeliveryError) as err:
                await web.send(FIRE, "U0ANNA")
            unsure.append(err.value.unsure)
    assert unsure == [False, True]
    closed = SlackChannel(  # nothing listens there: never connected
        settings(slack_bot_token=SecretStr("xoxb-test"), slack_api_url=slack.api_url)
    )
    with pytest.raises(DeliveryError) as err:
        await closed.send(FIRE, "U0ANNA")
    assert err.value.unsure is False


async def test_slack_groups_several_alerts_into_one_message() -> None:
    other = ALERT.model_copy(update={"alert_id": "acme:nps_detractor:1", "title": "Acme: NPS 3"})
    grouped = Notice("group", [ALERT, other], "a+b")
    slack = SlackStandIn()
    async with slack.running():
        channel = SlackChannel(settings(slack_webhook_url=slack.webhook_url))
        await channel.send(grouped, "U0ANNA")
    (post,) = slack.requests
    assert post.body["text"].startswith("<@U0ANNA> 2 alerts:")
    assert "NPS 3" in post.body["text"] and "8% of seats" in post.body["text"]


def test_a_grouped_message_stays_within_slacks_50_blocks() -> None:
    """Ten alerts of six blocks each made 61 blocks: Slack refused the message
    (invalid_blocks) and all ten alerts with it, dead after one attempt."""
    alerts = [ALERT.model_copy(update={"alert_id": f"a{n}:low_activity:1"}) for n in range(15)]
    blocks = message_blocks(Notice("group", alerts, "many"), "https://hw.example.com")
    assert len(blocks) <= MAX_BLOCKS
    shown = sum(1 for b in blocks if b["type"] == "actions")
    assert 0 < shown < 15
    assert blocks[-1]["type"] == "context"
    assert f"…and {15 - shown} more>" in blocks[-1]["elements"][0]["text"]


def test_a_grouped_message_shows_its_critical_alerts_first_and_links_the_rest() -> None:
    """A critical alert had been counted in "…and 24 more" below a page of info alerts
    (the group's order was the accounts'), with no link to them (found from outside)."""
    info = [
        ALERT.model_copy(
            update={"alert_id": f"a{n}:tier_review:1", "severity": Severity.info, "title": f"i{n}"}
        )
        for n in range(14)
    ]
    ended = ALERT.model_copy(update={"alert_id": "z:low_activity:1", "status": "resolved"})
    critical = ALERT.model_copy(update={"alert_id": "y:low_activity:1", "title": "Y: critical"})
    notice = Notice("group", [*info, ended, critical], "many")
    blocks = message_blocks(notice, "https://hw.example.com")
    heads = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    assert "Y: critical" in heads[1]  # first after the count, before what ended
    assert fallback_text(notice).startswith("16 alerts: Y: critical; i0; i1")
    more = blocks[-1]["elements"][0]["text"]
    assert more.startswith("<https://hw.example.com/ui/alerts|…and ") and more.endswith(" more>")


def test_a_notice_told_again_says_its_summary_is_from_when_it_fired() -> None:
    """A resolve said "Health score 22 (red)" in its text and "Health: 4 (red)" in its
    table (found from outside): the summary is from when it fired, the health now."""
    ended = ALERT.model_copy(
        update={"status": "resolved", "score": 4, "summary": "Health score 22 (red)."}
    )
    body = email_text_body(Notice("resolve", [ended], "a/resolve"), "https://hw.example.com")
    assert "When it fired: Health score 22 (red)." in body and "Health now: 4 (red)" in body
    fired = email_text_body(FIRE, "https://hw.example.com")
    assert "When it fired" not in fired and "Health: 21 (red)" in fired
    blocks = message_blocks(Notice("repeat", [ALERT], "a/repeat:1"), "https://hw.example.com")
    fields = [f["text"] for b in blocks for f in b.get("fields", [])]
    assert any(f.startswith("*Health now*") for f in fields), fields
    zh = email_text_body(Notice("resolve", [ended], "a/resolve"), "https://x", "zh-CN")
    assert "触发时：" in zh and "当前健康度：4" in zh


def test_a_grouped_emails_message_id_stays_one_short_line() -> None:
    """A group's key joins its notices': 51 of them made a 1,564-byte Message-ID line,
    past the 998 a line may hold (found in review). The same group, the same id."""
    many = [
        Notice("fire", [ALERT.model_copy(update={"alert_id": f"acct-{i:04d}:low_activity:1"})],
               f"acct-{i:04d}:low_activity:1/fire")
        for i in range(51)
    ]  # fmt: skip
    grouped = _one_notice(many)
    made = message_id(grouped, "hw@example.com")
    assert len(made) < 100 and made == message_id(_one_notice(many), "hw@example.com")
    assert message_id(FIRE, "hw@example.com").startswith("<acme.low_activity.1.fire.")


def test_a_grouped_email_lists_its_alerts_worst_first_each_as_its_own_notice() -> None:
    """Email is grouped as Slack is: one message, tagged by its worst alert, each alert
    headed by its own notice's kind."""
    warning = ALERT.model_copy(
        update={
            "alert_id": "beta:nps_detractor:1",
            "title": "Beta: NPS 3",
            "severity": Severity.warning,
        }
    )
    grouped = _one_notice(
        [Notice("fire", [warning], "b/fire"), Notice("escalate", [ALERT], "a/escalate")]
    )
    line = f"Escalated, not acknowledged: {ALERT.title}"
    assert email_subject(grouped) == f"[healthwatch critical] 2 alerts: {line}; Beta: NPS 3"
    body = email_text_body(grouped, "https://hw.example.com")
    assert body.startswith("2 alerts\n\n" + line)
    assert body.index(line) < body.index("Beta: NPS 3\n")
    zh = email_subject(grouped, "zh-CN")
    assert zh.startswith("[healthwatch 严重] 2 条预警：")


async def test_a_grouped_message_says_which_alerts_are_escalations_or_reminders() -> None:
    """Grouped, an escalation still reads as one (it read as a new alert)."""
    other = ALERT.model_copy(update={"alert_id": "acme:nps_detractor:1", "title": "Acme: NPS 3"})
    grouped = _one_notice(
        [Notice("escalate", [ALERT], "a/escalate"), Notice("fire", [other], "b/fire")]
    )
    slack = SlackStandIn()
    async with slack.running():
        channel = SlackChannel(settings(slack_webhook_url=slack.webhook_url))
        await channel.send(grouped, "U0ANNA")
    (post,) = slack.requests
    text = post.body["text"]
    assert f"Escalated, not acknowledged: {ALERT.title}" in text
    assert "; Acme: NPS 3" in text  # the new one as it is


async def test_email_is_multipart_with_escaped_html_and_a_stable_message_id() -> None:
    with smtp_server() as (inbox, port):
        channel = EmailChannel(settings(smtp_host="127.0.0.1", smtp_port=port))
        assert channel.address(ANNA) == "anna@example.com"
        await channel.send(FIRE, "anna@example.com")
        reminder = Notice("repeat", [ALERT], "acme:low_activity:1/repeat:1")
        await channel.send(reminder, "anna@example.com")
    first, second = inbox.messages
    fired = int(ALERT.fired_at.timestamp())
    # The sender's domain and the alert's first firing: the same alert id from another
    # install, or after a database reset, is another message.
    assert first["Message-ID"] == f"<acme.low_activity.1.fire.{fired}@localhost>"
    assert first["Date"] is not None  # none was sent; some mail services mark that spam
    assert "Acme &lt;Corp&gt;" in first.get_body(("html",)).get_content()
    plain = first.get_body(("plain",)).get_content()
    assert "Acme <Corp>" in plain and "fell from 42 to 4, −90%" in plain
    assert second["Subject"].startswith("[healthwatch critical] Reminder: ")
    assert second["Message-ID"] != first["Message-ID"]


async def test_a_sender_named_in_chinese_reaches_a_relay_without_smtputf8() -> None:
    """The whole From line went as the envelope sender: its non-ASCII name made the
    client ask for SMTPUTF8, and a relay without it refused every email."""
    with smtp_server() as (inbox, port):
        sender = "健康监测 <hw@example.cn>"
        channel = EmailChannel(settings(smtp_host="127.0.0.1", smtp_port=port, smtp_from=sender))
        await channel.send(FIRE, "anna@example.com")
    (message,) = inbox.messages
    assert inbox.senders == ["hw@example.cn"]
    assert str(message["From"]) == sender  # the name, encoded in the header, reads back
    assert message["Message-ID"].endswith("@example.cn>")


async def test_unreachable_smtp_is_a_retryable_error() -> None:
    from devservices import free_port

    channel = EmailChannel(settings(smtp_host="127.0.0.1", smtp_port=free_port()))
    with pytest.raises(DeliveryError) as err:
        await channel.send(FIRE, "anna@example.com")
    assert not err.value.permanent


async def test_a_destination_echoing_its_path_leaks_no_token() -> None:
    """A gateway answered "internal error at /services/T…/B…/<token>": the token went to
    the log and to deliveries.last_error."""
    token = "XoxSlackTokenSecret42"

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text=f"internal error at {request.url.path}")

    url = f"https://hooks.example.com/services/T0SECRET1/B0SECRET1/{token}?key=QueryToken77"
    async with httpx.AsyncClient(transport=httpx.MockTransport(echo)) as client:
        channel = WebhookChannel(settings(webhook_url=url), client=client)
        with pytest.raises(DeliveryError) as err:
            await channel.send(FIRE, "webhook")
    said = str(err.value)
    assert "internal error at" in said
    for secret in (token, "T0SECRET1", "B0SECRET1"):
        assert secret not in said
    assert without_url_secrets(f"bad {url}", url).count("…") >= 1
    short = "https://hooks.example.com/services/hook?token=abc123"
    said = without_url_secrets("invalid services token abc123 at /services/hook", short)
    assert said == "invalid services token … at …"  # the words stay, the token goes
    # A query value is a key whatever it looks like (found from outside).
    keyed = "http://127.0.0.1:8612/hook/tokenPATHSECRET?key=qsecret"
    said = without_url_secrets("invalid api key qsecret for /hook/tokenPATHSECRET", keyed)
    assert "qsecret" not in said and "tokenPATHSECRET" not in said and "api key" in said
    # A receiver that echoes the request's headers: the URL's user and password went
    # out as Basic authorization (found from outside), kept in last_error for admins.
    with_user = "https://user:webhookpassFFFF@hooks.example.com/in"
    echoed = "denied: Authorization: Basic dXNlcjp3ZWJob29rcGFzc0ZGRkY= (user webhookpassFFFF)"
    said = without_url_secrets(echoed, with_user)
    assert "dXNlcjp3ZWJob29rcGFzc0ZGRkY" not in said and "webhookpassFFFF" not in said
    assert said.startswith("denied: Authorization: Basic …")
    # An empty or one-letter password garbles nothing; a %-encoded one goes out decoded.
    assert without_url_secrets("bad request", "https://user:@hooks.example.com/in") == (
        "bad request"
    )
    assert without_url_secrets("bad request", "https://u:b@hooks.example.com/in") == "bad request"
    said = without_url_secrets("login p@ssword1 refused", "https://u:p%40ssword1@h.example.com/x")
    assert said == "login … refused"


async def test_webhook_posts_signed_json_with_an_idempotency_key() -> None:
    hook = SlackStandIn()  # any recording HTTP server will do
    hook.script.append((503, {"Retry-After": "2"}))
    async with hook.running():
        channel = WebhookChannel(
            settings(webhook_url=hook.webhook_url, webhook_secret=SecretStr("s3cret"))
        )
        with pytest.raises(DeliveryError) as err:
            await channel.send(FIRE, "webhook")
        assert err.value.retry_after_s == 2 and not err.value.permanent
        # A receiver mid-deploy (its proxy's 404) or rotating its secret (401, 403) is
        # retried; a notice it refuses as such (422), or a receiver gone (410), is not
        # (every notice of a 20 s blip was given up at its first attempt: found from
        # outside).
        for status, permanent in ((404, False), (401, False), (403, False), (422, True)):
            hook.script.append((status, {}))
            with pytest.raises(DeliveryError) as err:
                await channel.send(FIRE, "webhook")
            assert err.value.permanent is permanent, status
        await channel.send(FIRE, "webhook")
    request = hook.requests[1]
    stamp = request.headers["x-healthwatch-timestamp"]
    assert abs(int(stamp) - time.time()) < 60
    assert request.headers["x-healthwatch-signature"] == webhook_signature(
        "s3cret", stamp, request.raw
    )
    assert request.headers["idempotency-key"] == "acme:low_activity:1/fire"
    assert request.body["kind"] == "fire"
    assert request.body["alerts"][0]["alert_id"] == "acme:low_activity:1"


def test_strategic_routing_adds_the_lead_and_the_accounts_sales_owner() -> None:
    routing = Routing(
        tiers={"strategic": ["cs_lead", "sales_manager"]},
        people={
            "cs_lead": Recipient(email="lead@example.com", slack="U0LEAD"),
            "sales_manager": Recipient(email="sales@example.com"),
        },
    )
    s = settings(fallback_email="team@example.com")
    people = recipients(ALERT, routing, s)
    assert [p.email for p in people] == ["anna@example.com", "lead@example.com", "bob@example.com"]
    email = EmailChannel(s)
    webhook = WebhookChannel(s)
    assert addresses([email, webhook], people) == [
        ("email", "anna@example.com"),
        ("email", "lead@example.com"),
        ("email", "bob@example.com"),
        ("webhook", "webhook"),
    ]
    # No owner: the team hears about it; other tiers add nobody.
    orphan = ALERT.model_copy(update={"owner": None, "tier": "non-focus"})
    assert [p.email for p in recipients(orphan, routing, s)] == ["team@example.com"]


def test_escalations_go_to_the_team_while_no_lead_has_an_address() -> None:
    """The shipped file names the CS lead without an address: escalations reached
    nobody (a warning at start only; found from outside). The team hears instead."""
    shipped = parse_alerting(default_alerting_source()).routing
    s = settings(fallback_email="team@example.com")
    assert [p.email for p in escalation_recipients(ALERT, shipped, s)] == ["team@example.com"]
    slack = SlackChannel(settings(slack_webhook_url="https://hooks.slack.com/services/T/B/x"))
    assert addresses([slack], escalation_recipients(ALERT, shipped, settings())) == [
        ("slack", "webhook")  # the incoming webhook's channel, no one mentioned
    ]
    lead = Recipient(email="lead@example.com")
    addressed = shipped.model_copy(update={"people": {**shipped.people, "cs_lead": lead}})
    assert [p.email for p in escalation_recipients(ALERT, addressed, s)] == ["lead@example.com"]


def test_where_an_unowned_accounts_alerts_go_is_known_before_the_first() -> None:
    """Email alone and no team fallback: an account without an owner reaches nobody, and
    the alerts service says so when it starts (it had said nothing before the first
    unroutable alert, found from outside). Slack's incoming webhook posts to its
    channel whoever is told."""
    bare = settings(smtp_host="127.0.0.1")
    assert unowned_reach([EmailChannel(bare)], Routing(), bare) == []
    team = settings(smtp_host="127.0.0.1", fallback_email="team@example.com")
    assert unowned_reach([EmailChannel(team)], Routing(), team) == ["email"]
    hook = settings(slack_webhook_url="https://hooks.slack.com/services/T/B/x")
    assert unowned_reach([SlackChannel(hook), EmailChannel(bare)], Routing(), bare) == ["slack"]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("2", 2.0),
        ("1e20", MAX_RETRY_AFTER_S),  # held every Slack notice past any date (OverflowError)
        ("inf", MAX_RETRY_AFTER_S),
        ("nan", None),
        ("-inf", 0.0),
        ("-5", 0.0),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),
        (None, None),
    ],
)
def test_a_retry_after_header_is_read_within_an_hour(
    header: str | None, seconds: float | None
) -> None:
    assert retry_after(header) == seconds


def test_a_digest_of_one_alert_says_one_alert() -> None:
    """ "[healthwatch] 1 open alerts: your daily digest" (found from outside)."""
    one = Notice("digest", [ALERT], "digest:anna@example.com:2026-11-23")
    two = Notice("digest", [ALERT, ALERT], "digest:anna@example.com:2026-11-24")
    assert headline(one) == "1 open alert: your daily digest"
    assert headline(two) == "2 open alerts: your daily digest"
    assert headline(one, lang="zh-CN") == "每日摘要：1 条未解决预警"


def test_no_field_passes_slacks_limit_for_a_long_chinese_account_id() -> None:
    """An id of 200 Chinese characters and no name: its percent-encoded link made the
    Account field 2,048 characters, and Slack refused the message (found from outside)."""
    account = "中" * 200
    alert = ALERT.model_copy(
        update={"account_id": account, "account_name": None, "alert_id": f"{account}:x:1"}
    )
    blocks = message_blocks(Notice("fire", [alert], "k"), "https://hw.example.com")
    fields = [f["text"] for b in blocks for f in b.get("fields", [])]
    assert fields and all(len(text) <= 2000 for text in fields)
    assert any(account in text for text in fields)  # named, if not linked
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert any("url" in button for button in buttons)  # "Open account" links it


def test_an_alerts_end_does_not_read_as_an_alarm() -> None:
    """ "[healthwatch warning] Resolved: …" and ":warning: *Resolved: …*" read as alarms
    (found from outside)."""
    ended = ALERT.model_copy(update={"status": "resolved", "title": "Resolved: Acme: low"})
    notice = Notice("resolve", [ended], "acme:low_activity:1/resolve")
    assert email_subject(notice).startswith("[healthwatch resolved] Resolved: ")
    assert email_subject(notice, "zh-CN").startswith("[healthwatch 已解决] ")
    head = message_blocks(notice, "https://hw.example.com")[0]["text"]["text"]
    assert head.startswith(":white_check_mark: ") and ":rotating_light:" not in head


def test_a_fire_and_an_update_of_one_alert_in_a_group_are_one_alert() -> None:
    """ "2 alerts: Gamma: NPS 2; Updated: Gamma: the decision maker changed": the stale
    copy and a second set of buttons (found from outside)."""
    first = ALERT.model_copy(update={"revision": 0, "severity": Severity.warning})
    worse = ALERT.model_copy(update={"revision": 1, "title": "Acme: the decision maker changed"})
    other = ALERT.model_copy(update={"alert_id": "acme:nps_detractor:1", "title": "Acme: NPS 3"})
    grouped = _one_notice(
        [
            Notice("fire", [first], "a/fire"),
            Notice("fire", [other], "b/fire"),
            Notice("update", [worse], "a/update:1"),
        ]
    )
    assert [a.alert_id for a in grouped.alerts] == [ALERT.alert_id, other.alert_id]
    assert grouped.alerts[0].revision == 1 and grouped.kinds == ("fire", "fire")
    alone = _one_notice([Notice("fire", [first], "a/fire"), Notice("update", [worse], "a/u")])
    assert (alone.kind, alone.alerts) == ("fire", [worse])
    # Of one revision, the most telling notice (a later reminder hid an escalation).
    lead = _one_notice([Notice("escalate", [worse], "a/e"), Notice("repeat", [worse], "a/r")])
    assert lead.kind == "escalate"


def test_slacks_incoming_webhook_gets_one_post_per_notice_mentioning_everyone() -> None:
    """One channel: a strategic alert was posted once per person (the lead's and the
    sales manager's copies repeated it), and an owner without a Slack id got no post
    at all (found from outside)."""
    hook = SlackChannel(settings(slack_webhook_url="http://127.0.0.1:9/hook"))
    people = [
        Recipient(email="anna@example.com", slack="U0ANNA"),
        Recipient(name="CS lead", slack="U0LEAD"),
        Recipient(email="bob@example.com"),
    ]
    assert addresses([hook], people) == [("slack", "U0ANNA U0LEAD")]
    assert addresses([hook], people[2:]) == [("slack", "webhook")]  # posted, unmentioned
    text = fallback_text(FIRE, "U0ANNA U0LEAD")
    assert text.startswith("<@U0ANNA> <@U0LEAD> ")
    assert addresses([hook], []) == []  # nobody to tell: told nowhere, counted so
    web = SlackChannel(settings(slack_bot_token="xoxb-1"))  # the Web API: one per person
    assert addresses([web], people) == [("slack", "U0ANNA"), ("slack", "U0LEAD")]
