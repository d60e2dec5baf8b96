"""The webhook: every notice as signed JSON to one URL (``HEALTHWATCH_WEBHOOK_URL``)."""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx
import orjson

from services.alerts.channels.base import (
    SEND_TIMEOUT_S,
    WEBHOOK_DESTINATION,
    DeliveryError,
    Unseeing,
    retry_after,
)
from services.alerts.channels.text import account_url, header_token, without_url_secrets
from shared.alerting.schema import Recipient
from shared.config import Settings
from shared.contracts.notices import Notice


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``timestamp.body``; receivers recompute it
    and reject stale timestamps, which stops replays."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookChannel(Unseeing):
    """Every notice as JSON to one URL, HMAC-signed (``X-Healthwatch-Signature``), with
    each account's dashboard page (``account_urls``: account id → URL). The notice key
    goes as the Idempotency-Key."""

    name = "webhook"
    broadcast = True
    one_post = False

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None):
        self._settings = settings
        self._client = client

    def address(self, recipient: Recipient) -> str:
        return WEBHOOK_DESTINATION

    def pace_key(self, destination: str) -> None:
        return None

    async def send(self, notice: Notice, destination: str) -> None:
        public = self._settings.public_url
        ids = [a.account_id for a in notice.alerts]
        if notice.case is not None:
            ids.append(notice.case.account_id)
        if notice.handover is not None:
            ids += [a.account_id for a in notice.handover.accounts]
        links = {account_id: account_url(public, account_id) for account_id in ids}
        body = orjson.dumps({**notice.to_json(), "account_urls": links})
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": header_token(notice.key),
            "X-Healthwatch-Timestamp": timestamp,
        }
        secret = self._settings.webhook_secret.get_secret_value()
        if secret:
            headers["X-Healthwatch-Signature"] = webhook_signature(secret, timestamp, body)
        try:
            response = await self._post(body, headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook unreachable: {exc!r}") from exc
        if response.status_code >= 300:
            raise DeliveryError(
                f"webhook answered {response.status_code}: "
                + without_url_secrets(response.text, self._settings.webhook_url)[:200],
                retry_after_s=retry_after(response.headers.get("Retry-After")),
                # The notice itself is refused (malformed, too large) or the endpoint is
                # gone for good. Not 401, 403 or 404: a receiver mid-deploy behind its
                # proxy, or a secret being rotated, lost every notice of a 20 s blip on
                # its first attempt (found from outside); retried, they arrive.
                permanent=response.status_code in (400, 410, 413, 422),
            )

    async def _post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        url = self._settings.webhook_url
        if self._client is not None:
            return await self._client.post(url, content=body, headers=headers)
        async with httpx.AsyncClient(timeout=SEND_TIMEOUT_S) as client:
            return await client.post(url, content=body, headers=headers)
