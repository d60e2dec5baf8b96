"""The past days an import's ticket lines change (``ImportCalendar.note_tickets``).

A day's backlog is read from each ticket's newest state (``as_of.tickets_as_of``),
counted from its ``created_at`` to its ``solved_at``. So a ticket line changes the days
of its account from the earliest moment it moves: its opening for a ticket new to the
database (a helpdesk export's line is the ticket's last update, weeks after it was
opened), moved to another account (both accounts' days, the old owner's too) or given
another opening; else its own time or a solving it brings or takes back, whichever is
first. Taking every line's opening instead scored weeks of days again for each update
of a ticket already known, with nothing changed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring.import_lines import TicketLine, ticket_line
from shared.storage.db import among
from shared.storage.tables import tickets


def ticket_lines(lines: Sequence[bytes]) -> dict[str, list[TicketLine]]:
    """ticket id → the lines of ``lines`` about it (none: no ticket line at all)."""
    read: dict[str, list[TicketLine]] = defaultdict(list)
    for line in lines:
        if (ticket := ticket_line(line)) is not None:
            read[ticket.ticket_id].append(ticket)
    return read


async def changed_days(
    conn: AsyncConnection, read: dict[str, list[TicketLine]], zone: tzinfo
) -> dict[str, tuple[date, set[str]]]:
    """ticket id → the first day (in ``zone``) its lines (``ticket_lines``) change, and
    the accounts whose days they change, from the tickets as stored before they apply."""
    t = tickets.c
    rows = await conn.execute(
        select(t.ticket_id, t.account_id, t.created_at, t.solved_at).where(
            among(conn, t.ticket_id, sorted(read))
        )
    )
    stored = {row.ticket_id: row for row in rows}
    out: dict[str, tuple[date, set[str]]] = {}
    for ticket_id, lines_of in read.items():
        since, accounts = _first_change(lines_of, stored.get(ticket_id))
        out[ticket_id] = (since.astimezone(zone).date(), accounts)
    return out


def _first_change(lines: list[TicketLine], row: Any) -> tuple[datetime, set[str]]:
    accounts = {line.account_id for line in lines}
    if (
        row is None
        or accounts != {row.account_id}
        or any(line.created_at != row.created_at for line in lines)
    ):
        # New, moved or opened at another time: every day since its opening.
        openings = [line.created_at for line in lines]
        if row is not None:
            accounts.add(row.account_id)
            openings.append(row.created_at)
        return min(openings), accounts
    moments = [line.occurred_at for line in lines]
    moments += [line.solved_at for line in lines if line.solved_at is not None]
    if row.solved_at is not None:
        moments.append(row.solved_at)  # a solving it may take back (reopened)
    return min(moments), accounts
