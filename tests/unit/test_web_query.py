"""A read of the API naming a query parameter its route does not take is refused (400):
a CS lead's ``/v1/alerts?state=resolved`` (for ``status``) had answered every open
alert as if filtered. Commands, webhooks and pages outside ``/v1`` are left alone."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import httpx
from fastapi import Depends, FastAPI, Query
from pydantic import BaseModel

from shared.auth import KeyStore
from shared.storage.db import create_engine
from shared.web import base_app


async def _paging(limit: Annotated[int, Query(ge=1)] = 10) -> int:
    return limit


class _Filter(BaseModel):
    band: str = "red"
    tier: str | None = None


def _app() -> FastAPI:
    app = base_app("t", KeyStore(create_engine("sqlite+aiosqlite://")))

    @app.get("/v1/things")
    async def things(
        limit: Annotated[int, Depends(_paging)], status: str = "open"
    ) -> dict[str, object]:
        return {"status": status, "limit": limit}

    @app.get("/v1/modelled")
    async def modelled(q: Annotated[_Filter, Query()]) -> dict[str, object]:
        return q.model_dump()

    @app.post("/v1/things")
    async def add() -> dict[str, bool]:
        return {"added": True}

    @app.get("/ui/page")
    async def page() -> dict[str, bool]:
        return {"page": True}

    return app


async def _get(path: str, method: str = "GET", **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.request(method, path, headers=headers)


async def test_a_misspelt_filter_is_refused_naming_what_the_route_takes() -> None:
    answer = await _get("/v1/things?state=resolved&limit=5")
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == "unknown_parameter"
    assert body["unknown"] == ["state"]
    assert body["known"] == ["limit", "status"]  # a dependency's parameter counts
    assert "'state'" in body["message"] and "limit, status" in body["message"]


async def test_it_is_worded_in_chinese() -> None:
    answer = await _get("/v1/things?state=1", **{"Accept-Language": "zh-CN"})
    assert answer.status_code == 400
    assert "未知的查询参数" in answer.json()["message"]


async def test_declared_parameters_commands_and_pages_pass() -> None:
    ok = await _get("/v1/things?status=any&limit=5")
    assert ok.status_code == 200 and ok.json() == {"status": "any", "limit": 5}
    assert (await _get("/v1/things?source=crm", method="POST")).status_code == 200
    # Parameters declared as a model are its fields.
    modelled = await _get("/v1/modelled?band=green&tier=smb")
    assert modelled.status_code == 200 and modelled.json() == {"band": "green", "tier": "smb"}
    assert (await _get("/v1/modelled?q=1")).json()["known"] == ["band", "tier"]
    assert (await _get("/ui/page?anything=1")).status_code == 200


async def test_hostile_parameter_names_get_a_bounded_answer() -> None:
    """A name of 10,000 characters, control characters, many names: a 400 naming at most
    five, each cut to 60 characters and quoted, never echoing the rest."""
    names = ["x" * 10_000, "a\x01b\r\nSet-Cookie: z", *(f"p{k}" for k in range(50))]
    query = "&".join(f"{quote(name)}=1" for name in names)
    answer = await _get(f"/v1/things?{query}")
    assert answer.status_code == 400
    body = answer.json()
    assert len(body["unknown"]) == 5 and all(len(name) <= 60 for name in body["unknown"])
    assert "\r" not in body["message"] and "\n" not in body["message"]
    assert len(answer.content) < 2_000
