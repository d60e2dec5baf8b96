"""``healthwatch web``: what people use in one place in production (the dashboard, the
read API, the alerts API), no consumer. Scoring's replicas cannot share one published
port, so before it the compose stack had no dashboard people could reach."""

from __future__ import annotations

import httpx
import pytest

from shared.config import Settings
from tests.support.harness import running_apart

pytestmark = [pytest.mark.integration]


async def test_web_serves_the_dashboard_and_both_apis(kafka_settings: Settings) -> None:
    async with (
        running_apart(kafka_settings) as (hw, ports),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{ports.web_port}",
            headers={"Authorization": f"Bearer {hw.key}"},
            timeout=30,
        ) as web,
    ):
        assert (await web.get("/readyz")).status_code == 200
        sign_in = await web.get("/ui/login")
        assert sign_in.status_code == 200 and 'name="csrf"' in sign_in.text
        for path in ("/v1/accounts", "/v1/health", "/v1/alerts", "/v1/cases", "/v1/plans"):
            answer = await web.get(path)
            assert answer.status_code == 200, (path, answer.text)
        # Events go to ingest, not here.
        assert (await web.post("/v1/events", json={"events": []})).status_code == 404
