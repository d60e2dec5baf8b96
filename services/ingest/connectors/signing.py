"""Each vendor's way of proving a webhook is theirs, checked on the raw body.

- Zendesk: ``X-Zendesk-Webhook-Signature`` = base64(HMAC-SHA256(secret, timestamp +
  body)) with ``X-Zendesk-Webhook-Signature-Timestamp`` (ISO 8601, e.g.
  2026-12-03T10:00:00Z). https://developer.zendesk.com/documentation/webhooks/verifying/
- HubSpot (v3): ``X-HubSpot-Signature-v3`` = base64(HMAC-SHA256(client secret, method +
  URI + body + timestamp)) with ``X-HubSpot-Request-Timestamp`` in epoch milliseconds,
  refused when older than 5 minutes.
  https://developers.hubspot.com/docs/apps/developer-platform/build-apps/authentication/request-validation
- Freshdesk signs nothing: its automation rule's webhook sends a custom header or basic
  auth (https://support.freshdesk.com/support/solutions/articles/132589), so the shared
  secret travels in ``X-Healthwatch-Token`` or as the basic-auth password.

Every timestamp must lie within ``WEBHOOK_TOLERANCE_S`` of the server's clock, the
window of our own signed ticket webhook (and HubSpot's five minutes), so a captured
delivery cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime

from services.ingest.routes import WEBHOOK_TOLERANCE_S
from shared.auth import same_secret
from shared.clock import from_epoch
from shared.web import ClientError

ZENDESK_SIGNATURE = "x-zendesk-webhook-signature"
ZENDESK_TIMESTAMP = "x-zendesk-webhook-signature-timestamp"
HUBSPOT_SIGNATURE = "x-hubspot-signature-v3"
HUBSPOT_TIMESTAMP = "x-hubspot-request-timestamp"
FRESHDESK_TOKEN = "x-healthwatch-token"


def _hmac_b64(secret: str, message: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def _stale(header: str, now: datetime) -> ClientError:
    return ClientError(
        401,
        "stale_timestamp",
        "{header} must be the time of sending, within {seconds} s of the server's clock: the "
        "vendor signs each delivery afresh, so check the server's clock.",
        values={"header": header, "seconds": WEBHOOK_TOLERANCE_S},
    )


def _bad_signature(header: str, scheme: str) -> ClientError:
    return ClientError(
        401,
        "bad_signature",
        "{header} does not match {scheme}: check that the secret configured here is the one the "
        "vendor shows for this webhook.",
        values={"header": header, "scheme": scheme},
    )


def _instant(stamp: str) -> datetime | None:
    """Zendesk's timestamp: ISO 8601 (its documented form) or Unix seconds."""
    if stamp.isascii() and stamp.isdigit() and len(stamp) <= 12:
        return from_epoch(int(stamp))  # None past year 9999: stale
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if len(stamp) <= 40 else None
    except ValueError:
        return None


def check_zendesk(headers: Mapping[str, str], secret: str, raw: bytes, now: datetime) -> None:
    """401 unless Zendesk signed ``raw`` with ``secret`` within the window."""
    stamp = headers.get(ZENDESK_TIMESTAMP, "")
    sent = _instant(stamp)
    if sent is None or sent.tzinfo is None:
        raise _stale("X-Zendesk-Webhook-Signature-Timestamp", now)
    if abs((now - sent).total_seconds()) > WEBHOOK_TOLERANCE_S:
        raise _stale("X-Zendesk-Webhook-Signature-Timestamp", now)
    expected = _hmac_b64(secret, stamp.encode() + raw)
    if not same_secret(headers.get(ZENDESK_SIGNATURE, ""), expected):
        raise _bad_signature(
            "X-Zendesk-Webhook-Signature", "base64(HMAC-SHA256(secret, timestamp + body))"
        )


def check_hubspot(
    headers: Mapping[str, str],
    secret: str,
    method: str,
    uris: list[str],
    raw: bytes,
    now: datetime,
) -> None:
    """401 unless HubSpot signed this request (v3) with the app's client secret within
    the window, for one of ``uris`` (the URL configured in HubSpot)."""
    stamp = headers.get(HUBSPOT_TIMESTAMP, "")
    # Milliseconds: at most 15 digits (int() of a huge header is slow).
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 15):
        raise _stale("X-HubSpot-Request-Timestamp", now)
    if abs(now.timestamp() - int(stamp) / 1000) > WEBHOOK_TOLERANCE_S:
        raise _stale("X-HubSpot-Request-Timestamp", now)
    given = headers.get(HUBSPOT_SIGNATURE, "")
    signed = [method.encode() + uri.encode() + raw + stamp.encode() for uri in uris]
    if not any(same_secret(given, _hmac_b64(secret, message)) for message in signed):
        raise _bad_signature(
            "X-HubSpot-Signature-v3",
            "base64(HMAC-SHA256(client secret, method + URL + body + timestamp)) for the URL "
            "HEALTHWATCH_PUBLIC_URL + path",
        )


def check_shared_secret(headers: Mapping[str, str], secret: str) -> None:
    """401 unless the request carries ``secret`` in X-Healthwatch-Token or as the
    basic-auth password (the user name is not checked: Freshdesk asks for one)."""
    given = headers.get(FRESHDESK_TOKEN, "")
    auth = headers.get("authorization", "")
    if not given and auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        given = decoded.partition(":")[2]
    if not given or not same_secret(given, secret):
        raise ClientError(
            401,
            "bad_token",
            "Send the shared secret (HEALTHWATCH_FRESHDESK_WEBHOOK_SECRET) in the "
            "X-Healthwatch-Token header, or as the password of basic authentication.",
        )
