"""What a notice says when the data is hostile (issue 11, items 9, 10 and 19): Slack
markup shows as text, headers stay one line, links point at the dashboard's page, mail
goes to the one address given. Rendering, and one aiosmtpd server on loopback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest

from services.alerts.channels import DeliveryError, slack
from services.alerts.channels import email as mail
from services.alerts.channels.email import EmailChannel
from services.alerts.channels.text import account_url, header_token
from shared.config import Settings
from shared.contracts.alerts import AlertEvent, Severity
from shared.contracts.events import Owner
from shared.contracts.notices import Notice
from tests.support.standins import Inbox, smtp_server

PUBLIC = "https://hw.example.com/"
HOSTILE = "<!channel> <http://evil.example|click> & <@U0BOSS>\r\nBcc: evil@x\u2028\x07"


def alert(**changes: Any) -> AlertEvent:
    base = AlertEvent(
        alert_id="acme:low_activity:1",
        account_id="acme",
        account_name=HOSTILE,
        rule="low_activity",
        severity=Severity.critical,
        title=f"{HOSTILE}: only 8% of seats active",
        summary=f"summary {HOSTILE}",
        score=21,
        band="red",
        owner=Owner(email="anna@example.com", slack_id="U0ANNA"),
        fired_at=datetime(2026, 11, 23, tzinfo=UTC),
        details={"changes": [{"text": f"change {HOSTILE}"}]},
    )
    return base.model_copy(update=changes)


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


@pytest.mark.parametrize("mention", [None, "U0ANNA"])
@pytest.mark.parametrize("count", [1, 2, 12])
def test_slack_shows_markup_in_data_as_text(mention: str | None, count: int) -> None:
    alerts = [alert(alert_id=f"acme:r:{n}") for n in range(count)]
    notice = Notice("fire" if count == 1 else "group", alerts, "k")
    blocks = slack.message_blocks(notice, PUBLIC, mention)
    texts = [slack.fallback_text(notice, mention), *strings(blocks)]
    for text in texts:
        # Slack's <...> syntax only where we put it: the mention, the account link and
        # a group's link to the rest of its alerts.
        for inner in re.findall(r"<([^>]*)>", text):
            assert (
                inner == f"@{mention}"
                or inner.startswith(PUBLIC + "ui/accounts/acme|")
                or re.fullmatch(re.escape(PUBLIC + "ui/alerts|…and ") + r"\d+ more", inner)
            ), inner
    joined = "\n".join(texts)
    assert "&lt;!channel&gt; &lt;http://evil.example|click&gt; &amp; &lt;@U0BOSS&gt;" in joined
    assert "<!channel>" not in joined and "<@U0BOSS>" not in joined


def test_slack_escapes_every_field_and_keeps_within_slacks_limits() -> None:
    long = alert(summary="&" * 5000, account_name="<" * 3000, title="x" * 4000)
    blocks = slack.message_blocks(Notice("fire", [long], "k"), PUBLIC)
    for block in blocks:
        if "text" in block:
            assert len(block["text"]["text"]) <= slack.SECTION_CHARS
        for field in block.get("fields", []):
            assert len(field["text"]) <= slack.FIELD_CHARS
    summary = blocks[1]["text"]["text"]
    assert summary.endswith("&amp;…") and "&am…" not in summary  # no escape cut in half
    # A destination holds the Slack ids to mention, apart by spaces (the incoming
    # webhook's one post): each is escaped, so none can become <!here>.
    mention = slack.fallback_text(Notice("fire", [alert()], "k"), "U0ANNA> <!here")
    assert mention.startswith("<@U0ANNA&gt;> <@&lt;!here> ") and "<!here" not in mention


def test_email_headers_are_one_line_whatever_the_name() -> None:
    notice = Notice("fire", [alert()], "acme:low_activity:1/fire")
    subject = mail.subject(notice)
    assert not re.search(r"[\x00-\x1f\x7f\u2028\u2029]", subject), subject
    msg = EmailMessage()
    msg["Subject"] = subject  # raised ValueError on the CR/LF before
    msg.set_content(mail.text_body(notice, PUBLIC))
    msg.add_alternative(mail.html_body(notice, PUBLIC), subtype="html")
    head = msg.as_bytes().split(b"\n\n", 1)[0].lower()
    assert not re.search(rb"^bcc:", head, re.M), head
    assert header_token("acme:low_activity:1/fire") == "acme:low_activity:1/fire"
    assert header_token("a b\r\nX-Evil: 1") == "a%20b%0D%0AX-Evil:%201"


@pytest.mark.parametrize(
    ("account_id", "path"),
    [
        ("acme", "/ui/accounts/acme"),
        ("calm/1 #x?y", "/ui/accounts/calm%2F1%20%23x%3Fy"),
        ("..", "/ui/accounts/%2E%2E"),
        ("é|<>", "/ui/accounts/%C3%A9%7C%3C%3E"),
    ],
)
def test_links_point_at_the_dashboards_account_page(account_id: str, path: str) -> None:
    assert account_url(PUBLIC, account_id) == "https://hw.example.com" + path
    notice = Notice("fire", [alert(account_id=account_id)], "k")
    url = account_url(PUBLIC, account_id)
    assert url in mail.text_body(notice, PUBLIC)
    assert f'href="{url}"' in mail.html_body(notice, PUBLIC)
    buttons = [b for b in slack.message_blocks(notice, PUBLIC) if b["type"] == "actions"]
    assert buttons[0]["elements"][0]["url"] == url


async def test_email_goes_to_the_one_address_given_never_to_one_injected() -> None:
    notice = Notice("fire", [alert()], "acme:low_activity:1/fire")
    rcpt: list[str] = []

    class Envelopes(Inbox):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            rcpt.extend(envelope.rcpt_tos)
            return await super().handle_DATA(server, session, envelope)

    with smtp_server(inbox=Envelopes()) as (inbox, port):
        channel = EmailChannel(
            Settings(_env_file=None, smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)  # type: ignore[call-arg]
        )
        await channel.send(notice, "CS Team <cs@example.com>")
        for hostile in ("a@x.example\r\nBcc: evil@x.example", "a@x.example, evil@x.example"):
            try:
                await channel.send(notice, hostile)
            except DeliveryError as exc:
                assert exc.permanent
    assert set(rcpt) <= {"cs@example.com", "a@x.example"} and "cs@example.com" in rcpt
    assert inbox.messages[0]["To"] == "CS Team <cs@example.com>"
    assert all(m["Bcc"] is None for m in inbox.messages)
