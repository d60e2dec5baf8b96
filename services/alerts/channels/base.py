"""What every channel is: a way to reach a recipient, and a ``send`` that either
delivers or raises ``DeliveryError`` (retryable unless ``permanent``)."""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import datetime
from typing import Protocol

from shared.alerting.schema import Recipient
from shared.contracts.notices import Notice

# The one destination of a broadcast channel (the webhook's URL, or Slack's single
# incoming webhook): never the URL itself, which is a credential.
WEBHOOK_DESTINATION = "webhook"
# Bounded so a hung receiver releases the sender long before its claim lease (60 s) ends.
SEND_TIMEOUT_S = 30
# Looking for a notice in doubt (``posted``) ends within this, its reads together: the
# send after it must still end inside the lease (``OutboxSender.send_due``'s deadline).
LOOK_TIMEOUT_S = 10


class DeliveryError(Exception):
    """``content``: the message itself was refused (Slack's invalid_blocks), not the
    destination or the connection: in a group, one notice's fault. ``unsure``: the
    request may have reached the receiver (a timeout, a dropped connection, a gateway's
    5xx): the message may be out although the send failed. ``unkeyed``: a copy of it
    could be neither looked for nor folded by the receiver (Slack's incoming webhook
    has no key): an unsure attempt is made once more, and then taken as out."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        permanent: bool = False,
        content: bool = False,
        unsure: bool = False,
        unkeyed: bool = False,
    ):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.permanent = permanent
        self.content = content
        self.unsure = unsure
        self.unkeyed = unkeyed


class Channel(Protocol):
    name: str
    # True: one delivery per notice, whoever the recipients are (the webhook).
    broadcast: bool

    @property
    def one_post(self) -> bool:
        """True: one delivery per notice to one channel, its people with an address
        mentioned there (Slack's incoming webhook; ``routing.addresses``)."""

    def address(self, recipient: Recipient) -> str | None:
        """Where this recipient is reached on this channel; None if not at all."""

    def pace_key(self, destination: str) -> str | None:
        """Deliveries sharing a key are paced (Slack: 1 message per second)."""

    async def send(self, notice: Notice, destination: str) -> None: ...

    async def posted(
        self, keys: Collection[str], destination: str, since: datetime
    ) -> set[str] | None:
        """Which of the notices ``keys`` are out at ``destination`` already, sent since
        ``since`` by an attempt whose outcome is unknown; None: this channel cannot tell
        (the notice is sent again, the receiver folds it by its key)."""


class Unseeing:
    """A channel that cannot look at what it sent (SMTP, a webhook): a notice in doubt
    goes again, with the same key (Message-ID, Idempotency-Key) for the receiver to
    fold."""

    async def posted(self, keys: Collection[str], destination: str, since: datetime) -> None:
        return None


# The longest wait a Retry-After header may ask for. A receiver asking for more (or
# writing milliseconds, or "inf") would hold every notice to its destination, Slack's
# all of them, that long: an hour is beyond any rate limit Slack documents, and the
# failed attempt still counts towards the delivery's last.
MAX_RETRY_AFTER_S = 3600.0


def retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds, at most MAX_RETRY_AFTER_S; None if absent or
    not a number of seconds (an HTTP date is read as none: the usual backoff)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)  # -inf: no wait; inf: the most
