"""Saved portfolio views: a person names the page's current filters and order, and
finds them again in a menu, on any browser.

A view is the portfolio page's query string, kept in the database per person (a CSM
key's email, so every key of one CSM shares them; else the key's id). The URL stays the
source of truth, so a view is also a link that can be bookmarked or sent; the database
only lists a person's own links by name. The portfolio page parses a saved query like
any URL, so a view saved before a filter changed still opens (unknown fields ignored).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from services.dashboard.auth import Viewer, checked_form, context
from shared.auth import Scope
from shared.clock import utcnow
from shared.storage.db import upsert
from shared.storage.tables import saved_views as table

router = APIRouter(prefix="/ui", include_in_schema=False)

NAME_CHARS = 100  # the column
QUERY_CHARS = 2000  # a query string of every filter is far shorter
# Views per person: a menu, not a store.
MAX_VIEWS = 50


def owner(who: Viewer) -> str:
    """Whose views these are: the CSM behind the key, else the key itself."""
    return who.key.csm_email or f"key:{who.key.key_id}"


async def saved_views(conn: AsyncConnection, who: Viewer) -> list[dict[str, str]]:
    """The viewer's views by name: ``name`` and ``query`` (the query string)."""
    q = select(table.c.name, table.c.query).where(table.c.owner == owner(who))
    rows = await conn.execute(q.order_by(func.lower(table.c.name)))
    return [{"name": name, "query": query} for name, query in rows]


def _clean_query(raw: str) -> str:
    """The portfolio's query string without its page number (a view starts at page
    1) and its notices."""
    pairs = urllib.parse.parse_qsl(raw.lstrip("?"), keep_blank_values=False)
    return urllib.parse.urlencode([(k, v) for k, v in pairs if k not in ("page", "done", "view")])


@router.post("/views")
async def save_view(request: Request) -> Response:
    """Save (or replace) the view named ``name`` as ``query``, or delete it when
    ``delete`` is set; then back to the portfolio showing that view."""
    who, form = await checked_form(request, Scope.read)
    # Printable characters only: no NUL (PostgreSQL refuses it) nor control characters.
    name = " ".join("".join(c for c in form.get("name", "") if c.isprintable()).split())
    name = name[:NAME_CHARS]
    query = _clean_query(form.get("query", "")[:QUERY_CHARS])
    mine = owner(who)
    async with context(request).engine.begin() as conn:
        if form.get("delete"):
            await conn.execute(delete(table).where(table.c.owner == mine, table.c.name == name))
            return _back(query, "view_deleted")
        if not name:
            return _back(query, "view_unnamed")
        count = select(func.count()).where(table.c.owner == mine, table.c.name != name)
        if (await conn.execute(count)).scalar_one() >= MAX_VIEWS:
            return _back(query, "view_full")
        row: dict[str, Any] = {"owner": mine, "name": name, "query": query, "created_at": utcnow()}
        await upsert(conn, table, [row], keys=["owner", "name"], update=["query", "created_at"])
    return _back(query, "view_saved")


def _back(query: str, done: str) -> Response:
    joined = f"{query}&done={done}" if query else f"done={done}"
    return RedirectResponse(f"/ui/?{joined}", status_code=303)
