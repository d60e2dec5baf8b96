"""The demo writes its own data (customers' names, case plans, reviews, the lesson) in
the language it runs in: a Chinese demo read English tasks and reviews on Chinese pages
(found from outside)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from services import simulate
from services.alerts.cases.demo import WORKED, work_cases
from services.simulator.relationship import relationship_events


def test_the_nps_comments_are_in_the_demos_language() -> None:
    """The Chinese demo showed English NPS comments beside Chinese ones (a CS lead's
    review): each answer's comment is in the demo's language."""
    now = datetime(2026, 12, 7, tzinfo=UTC)
    accounts = [simulate.facts(a, now, random.Random(2), "zh-CN")
                for a in simulate.make_accounts(40, random.Random(1), "zh-CN")]  # fmt: skip
    profiles = ["healthy"] * len(accounts)
    for language, chinese in (("zh-CN", True), ("en", False)):
        answers = relationship_events(accounts, profiles, now, language)
        comments = [e["comment"] for e in answers if e["kind"] == "nps" and e.get("comment")]
        assert comments, language
        assert all(c.isascii() != chinese for c in comments), (language, comments)


def test_the_customers_are_named_in_the_demos_language() -> None:
    (zh,) = simulate.make_accounts(1, random.Random(1), "zh-CN")
    (en,) = simulate.make_accounts(1, random.Random(1))
    assert (zh.name, en.name) == ("0000号客户有限公司", "Customer 0000 Ltd")
    assert (zh.seats, zh.profile) == (en.seats, en.profile)  # the same draws
    now = datetime(2026, 12, 7, tzinfo=UTC)
    zh_facts = simulate.facts(zh, now, random.Random(2), "zh-CN")
    en_facts = simulate.facts(en, now, random.Random(2))
    assert zh_facts["plan"] == "专业版" and en_facts["plan"] == "pro"
    assert not zh_facts["industry"].isascii() and not zh_facts["region"].isascii()
    assert zh_facts["owner"]["name"] == f"客户成功经理 {zh.csm}"
    # The codes healthwatch reads stay codes; the draws are the same.
    assert {
        k: v
        for k, v in zh_facts.items()
        if k not in ("plan", "industry", "region", "name", "owner")
    } == {
        k: v
        for k, v in en_facts.items()
        if k not in ("plan", "industry", "region", "name", "owner")
    }


async def test_the_case_work_is_written_in_the_demos_language() -> None:
    posted: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            cases = [{"case_id": n} for n in range(WORKED)]
            return httpx.Response(200, json={"cases": cases})
        posted.append(orjson.loads(request.content))
        return httpx.Response(201, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        now = datetime(2026, 12, 7, tzinfo=UTC)
        worked = await work_cases(
            client, "http://api", {}, random.Random(0), now, asyncio.Event(), "zh-CN"
        )
    assert worked == WORKED
    texts = [body.get("title") or body.get("notes") or body.get("lesson") for body in posted]
    assert len(texts) == 2 * WORKED + WORKED // 2 + 1  # two steps each, reviews, a lesson
    assert all(text and not text.isascii() for text in texts), texts
    assert "每季度都要见决策人，不能只对接 IT 联系人。" in texts
