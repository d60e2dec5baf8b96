"""Score history: the latest score per account per day, band changes, and the inputs
of earlier days that explanations compare against."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring import explain
from services.scoring.danger import cause_code, cause_of, cause_text
from services.scoring.model.schema import HealthModel
from shared.storage.db import among, insert_ignore, upsert
from shared.storage.tables import account_health, band_changes, health_daily

# Explanations compare with the score before this one, and with these days back.
LOOKBACK_DAYS = (7, 30)
# A day's row exists only if the score or its inputs changed that day: an older row,
# up to this many days, stands for it. A week covers a quiet weekend and holidays
# without comparing with a month-old state.
PAST_SLACK_DAYS = 7
# The rule clock of a day scored after the fact (an import's days): its noon in UTC, the
# same calendar day in every zone within ±12 hours of UTC (where nearly every account's
# zone lies). Its band changes are dated so.
NOON = time(12)


@dataclass(frozen=True)
class Previous:
    score: int | None
    band: str | None
    inputs: dict[str, Any] | None


async def load_previous(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, Previous]:
    rows = await conn.execute(
        select(
            account_health.c.account_id,
            account_health.c.score,
            account_health.c.band,
            account_health.c.inputs,
        ).where(among(conn, account_health.c.account_id, ids))
    )
    return {r.account_id: Previous(r.score, r.band, r.inputs) for r in rows}


async def rewind(
    conn: AsyncConnection,
    days: Mapping[str, tuple[date, tzinfo]],
    dropped: Callable[[int], None] = lambda rows: None,
) -> dict[str, Previous | None]:
    """Accounts to be scored as of a past day (account → the day, in its zone) that have
    rows on or after it: a later import's events on days already scored, or days the
    sweep scored ahead. Those rows, and the band changes dated on or after the day, are
    dropped: the days from it are scored again from what is known now, each compared
    with the day before (left, a day whose score did not change kept its outdated row,
    and a band change was logged against the newest day's band). Returns each such
    account's score before the day (None: it has none), which its card no longer
    holds. ``dropped`` hears how many daily rows were dropped."""
    h = health_daily.c
    newest = await conn.execute(
        select(h.account_id, func.max(h.day))
        .where(among(conn, h.account_id, days))
        .group_by(h.account_id)
    )
    ahead = [account for account, day in newest if day >= days[account][0]]
    if not ahead:
        return {}
    by_day: dict[tuple[date, tzinfo], list[str]] = defaultdict(list)
    for account in ahead:
        by_day[days[account]].append(account)
    # Their cards and rows after the days scored again were the sweep's or the stream's:
    # due to the sweep again, which scores them as of today (an import's closing sweep
    # had skipped them, swept already today, leaving a card days old).
    await conn.execute(
        update(account_health).where(account_health.c.account_id.in_(ahead)).values(swept_on=None)
    )
    before: dict[str, Previous | None] = dict.fromkeys(ahead)
    b = band_changes.c
    for (day, zone), accounts in by_day.items():
        gone = await conn.execute(
            delete(health_daily).where(h.account_id.in_(accounts), h.day >= day)
        )
        dropped(gone.rowcount)
        midnight = datetime.combine(day, time(), zone)
        # East of UTC+12 the day before's noon in UTC (an import's date for that day's
        # band change) falls after the day's midnight: it is the day before's to keep.
        eve = datetime.combine(day - timedelta(days=1), NOON, UTC)
        await conn.execute(
            delete(band_changes).where(
                b.account_id.in_(accounts), b.changed_at >= midnight, b.changed_at != eve
            )
        )
        latest = (
            select(h.account_id, func.max(h.day).label("day"))
            .where(h.account_id.in_(accounts), h.day < day)
            .group_by(h.account_id)
            .subquery()
        )
        rows = await conn.execute(
            select(h.account_id, h.score, h.band, h.inputs).join(
                latest, (h.account_id == latest.c.account_id) & (h.day == latest.c.day)
            )
        )
        before.update({r.account_id: Previous(r.score, r.band, r.inputs) for r in rows})
    return before


async def load_past_inputs(
    conn: AsyncConnection, as_of: dict[str, date], backs: Iterable[int] = LOOKBACK_DAYS
) -> dict[tuple[str, int], dict[str, Any]]:
    """(account, days back) → the inputs stored for that day, or for the latest day
    within PAST_SLACK_DAYS before it (a row is written only when something changed)."""
    targets: dict[tuple[date, int], list[str]] = defaultdict(list)
    for account, day in as_of.items():
        for back in set(backs):
            targets[(day - timedelta(days=back), back)].append(account)
    out: dict[tuple[str, int], dict[str, Any]] = {}
    h = health_daily
    for (target, back), ids in targets.items():
        latest = (
            select(h.c.account_id, func.max(h.c.day).label("day"))
            .where(
                among(conn, h.c.account_id, ids),
                h.c.day <= target,
                h.c.day >= target - timedelta(days=PAST_SLACK_DAYS),
            )
            .group_by(h.c.account_id)
            .subquery()
        )
        rows = await conn.execute(
            select(h.c.account_id, h.c.inputs).join(
                latest, (h.c.account_id == latest.c.account_id) & (h.c.day == latest.c.day)
            )
        )
        for r in rows:
            out[(r.account_id, back)] = r.inputs
    return out


async def with_moved_since(
    conn: AsyncConnection, account_id: str, why: dict[str, Any], inputs: dict[str, Any]
) -> dict[str, Any]:
    """The stored explanation of an account's score as its reader needs it: with what
    moved since LOOKBACK_DAYS back from the score's day (``explain.with_moved_since``).
    An explanation stored before the day was kept in it has those lists already."""
    day = why.get(explain.DAY)
    if day is None:
        return why
    past = await load_past_inputs(conn, {account_id: date.fromisoformat(day)})
    return explain.with_moved_since(
        why, inputs, {back: past.get((account_id, back)) for back in LOOKBACK_DAYS}
    )


def compact(why: dict[str, Any]) -> dict[str, Any]:
    """A day's explanation as history keeps it: what each measure scored and weighed,
    without what the day's inputs, the model's labels and the other days' rows already
    say (the full explanation of the newest score is in ``account_health``). Keeps the
    history row near a third of its full size."""
    danger = why.get("danger") or {}
    return {
        "model_version": why.get("model_version"),
        "profile": why.get("profile"),
        "groups": why.get("groups"),
        "capped_by": why.get("capped_by"),
        "missing": why.get("missing"),
        # measure → [score, weight, contribution]
        "components": {
            component["name"]: [component["score"], component["weight"], component["contribution"]]
            for component in why.get("components", [])
        },
        "danger": {
            "level": danger.get("level"),
            "causes": [cause.get("code") for cause in danger.get("causes", [])],
        },
    }


def expanded(
    kept: Mapping[str, Any], day: date, inputs: Mapping[str, Any], model: HealthModel
) -> dict[str, Any]:
    """A day's explanation as history keeps it (``compact``) in the shape of the newest
    score's (``account_health.components``): each component with its group, label and
    raw value again (from the model in force and the day's inputs), each danger cause
    with its level and sentence. ``GET …/health?as_of=`` had answered the kept shape, another than
    ``GET …/health`` (found from outside). A row kept before the history was compacted
    is returned as it is."""
    components = kept.get("components")
    if not isinstance(components, dict):
        return {**kept, explain.DAY: day.isoformat()}
    where = {
        name: (group_name, measure.label or name.replace("_", " "))
        for group_name, group in model.groups.items()
        for name, measure in group.measures.items()
    }
    danger = kept.get("danger") or {}
    return {
        **{key: kept.get(key) for key in ("model_version", "profile", "groups", "capped_by")},
        "missing": kept.get("missing") or [],
        "components": [
            {
                "group": where.get(name, (None, name))[0],
                "name": name,
                "label": where.get(name, (None, name))[1],
                "raw": inputs.get(name),
                "score": score,
                "weight": weight,
                "contribution": contribution,
            }
            for name, (score, weight, contribution) in components.items()
        ],
        "danger": {
            "level": danger.get("level"),
            "causes": [_cause(c, inputs, model) for c in danger.get("causes") or []],
        },
        explain.DAY: day.isoformat(),
    }


def _cause(stored: Any, inputs: Mapping[str, Any], model: HealthModel) -> dict[str, Any]:
    """A history row's danger cause with its sentence: the one a row written before the
    history kept codes holds, else made again from the day's inputs (with the danger
    thresholds of ``model``, the one in force: a sentence naming a threshold names
    today's)."""
    code = cause_code(stored)
    text = stored.get("text") if isinstance(stored, dict) else None
    return cause_of(code, text if isinstance(text, str) else cause_text(code, inputs, model.danger))


async def inputs_before(conn: AsyncConnection, account_id: str, day: date) -> dict[str, Any] | None:
    """The inputs of the account's newest score history row before ``day``, if any."""
    h = health_daily.c
    found = await conn.execute(
        select(h.inputs)
        .where(h.account_id == account_id, h.day < day)
        .order_by(h.day.desc())
        .limit(1)
    )
    return found.scalar()


async def record(
    conn: AsyncConnection,
    daily: list[dict[str, Any]],
    changes: list[dict[str, Any]],
    *,
    swept: bool = False,
    rewound: bool = False,
) -> None:
    """Upsert each account's row for its day; add band changes (replays add nothing).
    ``swept``: the sweep wrote these rows, and its mark stays (``_drop_outdated_sweeps``).
    ``rewound``: ``rewind`` has dropped every row from the day on (a past day scored
    again), so there are none after it to look for (a query per chunk of an import's
    days)."""
    if not rewound:
        await _drop_outdated_sweeps(conn, daily, due_again=not swept)
    await upsert(
        conn,
        health_daily,
        daily,
        keys=["account_id", "day"],
        update=["score", "band", "inputs", "explanation"],
    )
    if changes:
        await conn.execute(insert_ignore(conn, band_changes).on_conflict_do_nothing(), changes)


def band_change(
    account_id: str, at: datetime, before: Previous | None, band: str, score: int | None
) -> dict[str, Any] | None:
    if before is not None and before.band == band:
        return None
    return {
        "account_id": account_id,
        "changed_at": at,
        "from_band": before.band if before else None,
        "to_band": band,
        "score": score,
    }


async def _drop_outdated_sweeps(
    conn: AsyncConnection, daily: list[dict[str, Any]], *, due_again: bool = True
) -> None:
    """Rows on days after the one being written are the quiet-account sweep's: it scored
    the account as of later days from what it knew then. An account scored again as of
    an earlier day has had events since (a late one, a CRM fact), so those rows are
    outdated: left, the card (this score) and the history's newest day (the sweep's)
    would disagree. They are dropped, and the account made due to the sweep again, which
    scores it as of today from everything it now knows (``due_again``; not when the sweep
    itself writes the rows: it has just scored the account as of its today)."""
    if not daily:
        return
    h = health_daily.c
    day_of = {row["account_id"]: row["day"] for row in daily}
    newest = await conn.execute(
        select(h.account_id, func.max(h.day))
        .where(among(conn, h.account_id, day_of))
        .group_by(h.account_id)
    )
    outdated = [account for account, day in newest if day > day_of[account]]
    # One statement per day written (an import's day scores all its accounts as of one).
    by_day: dict[date, list[str]] = defaultdict(list)
    for account in outdated:
        by_day[day_of[account]].append(account)
    for day, accounts in by_day.items():
        await conn.execute(delete(health_daily).where(h.account_id.in_(accounts), h.day > day))
    if outdated and due_again:
        await conn.execute(
            update(account_health)
            .where(account_health.c.account_id.in_(outdated))
            .values(swept_on=None)
        )
