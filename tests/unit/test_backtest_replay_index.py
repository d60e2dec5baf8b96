"""The backtest reads its history through an index (bounded memory): the same replay as
holding every event in memory, and several files merged by event time."""

from __future__ import annotations

import asyncio
import gzip
from collections import Counter
from dataclasses import fields, replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import combinations
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from services.scoring.backtest import replay as rp
from services.scoring.backtest.baselines import history_baselines
from services.scoring.backtest.history_index import index_history
from services.scoring.backtest.report import build, text
from services.scoring.metrics import ScoringMetrics
from services.scoring.model.schema import load_default_model
from services.scoring.model.store import ModelStore
from services.scoring.processor import ScoringProcessor, batch_span
from services.scoring.sweep import QuietAccountSweep
from services.simulate_history import write_history
from shared.bus.base import Record
from shared.config import Settings
from shared.contracts.events import AccountFacts, LifecycleStage
from shared.contracts.wire import encode_event
from shared.storage.db import create_engine, migrate
from tests.support.history import index_events, index_lines, load_events


async def _in_memory_replay(
    path: Path, tmp: Path, step_days: int, *, every_batch: bool = False
) -> rp.Replay:
    """The replay as it was before the index: every event in memory, sorted, fed as
    events encoded again rather than as the files' lines, baselines computed afterwards
    from the same list (the reference the index must equal). ``every_batch``: as it was
    before the evaluation days scored every account: each batch scored its accounts
    and the quiet-account sweep the others."""
    events, rejected = load_events([path])
    result = rp.Replay(rejected=rejected, events=len(events))
    live = set()
    for event in events:
        if isinstance(event, AccountFacts) and event.lifecycle_stage is LifecycleStage.churned:
            result.churn.setdefault(event.account_id, event.occurred_at.astimezone(UTC).date())
        if isinstance(event, AccountFacts) and event.go_live is not None:
            live.add(event.account_id)
    result.go_live_accounts = len(live)
    first = result.first_day = events[0].occurred_at.astimezone(UTC).date()
    last = result.last_day = events[-1].occurred_at.astimezone(UTC).date()
    span = (last - first).days + 1
    days = [first + timedelta(days=k) for k in range(rp.WARM_UP_DAYS, span, step_days)]
    settings = Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp}/old.db")
    engine = create_engine(settings.database_url)
    await migrate(engine)
    clock = [datetime.combine(first, time(), UTC)]
    recorder = rp._FiringRecorder(result.firings)
    metrics = ScoringMetrics(CollectorRegistry())
    processor = ScoringProcessor(
        engine, recorder, settings, metrics, models=ModelStore(), clock=lambda: clock[0]
    )
    fed = 0
    for day in days:
        end = datetime.combine(day + timedelta(days=1), time(), UTC)
        clock[0] = end - timedelta(seconds=1)
        upto = fed
        while upto < len(events) and events[upto].occurred_at < end:
            upto += 1
        for start in range(fed, upto, rp.FEED_BATCH):
            chunk = events[start : min(upto, start + rp.FEED_BATCH)]
            await processor.handle(
                [
                    Record("backtest", 0, start + k, None, encode_event(e))
                    for k, e in enumerate(chunk)
                ],
                score=every_batch,
            )
        fed = upto
        if every_batch:
            await QuietAccountSweep(engine, recorder, processor, clock=lambda: clock[0]).run_once()
        else:
            await rp._score_all(processor, recorder, day, clock[0])
        result.snapshots += await rp._snapshots(engine, day, result.churn)
    await engine.dispose()
    result.firings.sort(key=rp.firing_order)  # the replay's order (merged from workers)
    scored = [(s.account_id, s.day) for s in result.snapshots]
    baselines = history_baselines(events, scored)
    result.snapshots = [
        replace(s, history=h) for s, h in zip(result.snapshots, baselines, strict=True)
    ]
    return result


# The index's clock: the history is read now, refusing what ingest would refuse now.
READ_NOW = {"now": datetime.now(UTC), "skew": timedelta(hours=1)}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated history (every event on the hour: (time, id) ties everywhere,
    broken by the event id) with a blank and a rejected line."""
    path = tmp_path_factory.mktemp("history") / "h.ndjson"
    write_history(path, path.with_suffix(".csv"), accounts=8, days=75, end=date(2026, 11, 1))
    with path.open("ab") as file:
        file.write(b"\n" + b'{"kind": "usage", "event_id": "broken"}\n')
    return path


@pytest.fixture(scope="module")
def indexed(history: Path) -> rp.Replay:
    return asyncio.run(rp.replay([history], step_days=5))


def test_replay_through_the_index_equals_the_replay_in_memory(
    history: Path, indexed: rp.Replay, tmp_path: Path
) -> None:
    before = asyncio.run(_in_memory_replay(history, tmp_path, step_days=5))
    assert indexed.snapshots and indexed.firings and indexed.churn and indexed.rejected == 1
    for name in (f.name for f in fields(rp.Replay) if f.compare):
        assert getattr(indexed, name) == getattr(before, name), name
    # The rejected line is named with its place and the reason.
    lines = len(history.read_bytes().splitlines())
    ((name, line, why),) = indexed.rejects
    assert (name, line) == ("h.ndjson", lines) and "occurred_at" in why
    assert list(indexed.churn) == list(before.churn)  # the same order too


def test_files_interleaved_in_time_merge_like_one_file(
    history: Path, indexed: rp.Replay, tmp_path: Path
) -> None:
    lines = history.read_bytes().splitlines(keepends=True)
    # Alternate lines to two files (one gzip, one with CRLF): each interleaves the other.
    (tmp_path / "a.ndjson.gz").write_bytes(gzip.compress(b"".join(lines[0::2])))
    (tmp_path / "b.ndjson").write_bytes(b"".join(line.rstrip() + b"\r\n" for line in lines[1::2]))
    files = [tmp_path / "a.ndjson.gz", tmp_path / "b.ndjson"]
    index = index_history(files, tmp_path, lambda lines: None, **READ_NOW)
    assert index_events(index) == load_events([history])[0]
    merged = asyncio.run(rp.replay(files, step_days=5))
    assert merged == indexed


def test_lines_from_the_future_are_rejected_not_replayed(
    history: Path, indexed: rp.Replay, tmp_path: Path
) -> None:
    """One event in the year 2199 (the contract allows it) would stretch the evaluation
    days to it, with or without a receipt time as far ahead; one dated past its own
    receipt + the skew would be refused by ingest. All are rejected by the first pass, and the replay is that of the history without
    them. A line within the skew of the clock is kept."""
    clock = datetime(2026, 11, 2, tzinfo=UTC)  # the history ends the day before
    future = tmp_path / "future.ndjson"
    late_receipt = (
        b'"occurred_at":"2026-10-20T12:00:00+00:00","received_at":"2026-10-20T10:00:00+00:00"'
    )
    future.write_bytes(
        history.read_bytes()
        + b'{"kind":"usage","event_id":"far","account_id":"hist-0000","user_id":"u",'
        + b'"event":"login","occurred_at":"2199-01-01T00:00:00+00:00"}\n'
        + b'{"kind":"usage","event_id":"skewed","account_id":"hist-0000","user_id":"u",'
        + b'"event":"login",'
        + late_receipt
        + b"}\n"
        + b'{"kind":"usage","event_id":"received-ahead","account_id":"hist-0000","user_id":"u",'
        + b'"event":"login","occurred_at":"2199-01-01T00:00:00+00:00",'
        + b'"received_at":"2199-01-01T00:00:00+00:00"}\n'
    )
    replayed = asyncio.run(rp.replay([future], step_days=5, clock=lambda: clock))
    assert replayed.rejected == indexed.rejected + 3
    assert replace(replayed, rejected=indexed.rejected) == indexed
    soon = tmp_path / "soon.ndjson"
    soon.write_bytes(
        b'{"kind":"usage","event_id":"soon","account_id":"a","user_id":"u",'
        + b'"event":"login","occurred_at":"2026-11-02T00:59:00+00:00"}\n'
    )
    index = index_history([soon], tmp_path, lambda lines: None, now=clock, skew=timedelta(hours=1))
    assert len(index) == 1 and index.rejected == 0


def test_an_event_resent_counts_once_in_the_figures_too(
    history: Path, indexed: rp.Replay, tmp_path: Path
) -> None:
    """The score counted a resent event once, but the report's "events" counted every
    line (found from outside): it says how many lines repeated an event."""
    resent = tmp_path / "resent.ndjson"
    lines = history.read_bytes().splitlines(keepends=True)
    usage = next(line for line in lines if b'"kind": "usage"' in line or b'"kind":"usage"' in line)
    resent.write_bytes(b"".join(lines) + usage)
    again = asyncio.run(rp.replay([resent], step_days=5))
    assert (again.events, again.repeated) == (indexed.events + 1, 1)
    assert replace(again, events=indexed.events, repeated=0) == indexed
    report = build(again, [30], load_default_model())
    assert (report["events"], report["repeated_events"]) == (indexed.events, 1)
    assert "(1 more lines repeated an event, counted once)" in text(report)


def test_a_byte_order_mark_before_the_first_line_is_skipped(history: Path, tmp_path: Path) -> None:
    """As ``read_lines`` skips it for import (a plain file is read at its offsets)."""
    marked = tmp_path / "marked.ndjson"
    marked.write_bytes(b"\xef\xbb\xbf" + history.read_bytes())
    index = index_history([marked], tmp_path, lambda lines: None, **READ_NOW)
    assert index_events(index) == load_events([history])[0]


def test_every_account_has_a_score_on_every_evaluation_day(
    history: Path, indexed: rp.Replay, tmp_path: Path
) -> None:
    """An account whose score does not move (CRM facts only, nothing to score) writes no
    history row after its first, yet is scored, and kept, on each evaluation day; and
    every account is scored as of each day from its first evaluation day on."""
    facts = (
        b'{"kind": "account", "event_id": "quiet-facts", "account_id": "quiet",'
        b' "occurred_at": "2026-08-20T00:30:00+00:00", "name": "Quiet Ltd"}\n'
    )
    quiet = tmp_path / "quiet.ndjson"
    quiet.write_bytes(facts + history.read_bytes())
    result = asyncio.run(rp.replay([quiet], step_days=5))
    days = sorted({snapshot.day for snapshot in indexed.snapshots})
    assert [s.day for s in result.snapshots if s.account_id == "quiet"] == days
    by_account: dict[str, list[date]] = {}
    for snapshot in indexed.snapshots:
        by_account.setdefault(snapshot.account_id, []).append(snapshot.day)
    for account_id, scored in by_account.items():
        gone = indexed.churn.get(account_id)
        expected = [d for d in days if d >= scored[0] and (gone is None or d < gone)]
        assert scored == expected, account_id


def test_the_scores_are_those_of_scoring_every_batch(
    history: Path, indexed: rp.Replay, tmp_path: Path
) -> None:
    """Every score the replay had when each batch scored its accounts (and the sweep the
    quiet ones) it still has, the same; it also has the accounts whose score did not
    move, which that replay left out (no history row of the day)."""
    before = asyncio.run(_in_memory_replay(history, tmp_path, step_days=5, every_batch=True))
    now = {(s.account_id, s.day): (s.score, s.band, s.inputs, s.groups) for s in indexed.snapshots}
    then = {(s.account_id, s.day): (s.score, s.band, s.inputs, s.groups) for s in before.snapshots}
    assert then and {key: now.get(key) for key in then} == then


def test_a_history_batch_spans_no_more_than_the_dedup_window_or_the_late_grace() -> None:
    """Batching is part of what the scoring step counts (late events, repeated ids): a
    batch as long as a step would drop its first weeks under a short late grace."""
    settings = Settings(_env_file=None)
    assert batch_span(settings) == timedelta(hours=48)
    assert batch_span(settings.model_copy(update={"late_grace_days": 1})) == timedelta(days=1)


def _with_shared_keys(history: Path, folder: Path) -> Path:
    """The history with a ticket moved from one account to another and a touchpoint
    id two accounts used: what one of them does changes what the other's replay
    stores (the ticket's backlog, the first touchpoint kept)."""
    shared = folder / "shared.ndjson"
    lines = [
        '{"kind":"ticket","event_id":"mv1","account_id":"hist-0001","ticket_id":"moved",'
        '"status":"open","priority":"urgent","type":"bug","created_at":"2026-09-01T08:00:00Z",'
        '"occurred_at":"2026-09-01T08:00:00Z"}',
        '{"kind":"ticket","event_id":"mv2","account_id":"hist-0002","ticket_id":"moved",'
        '"status":"open","priority":"urgent","type":"bug","created_at":"2026-09-01T08:00:00Z",'
        '"occurred_at":"2026-09-10T08:00:00Z"}',
        '{"kind":"touchpoint","event_id":"tp","account_id":"hist-0003",'
        '"touchpoint_kind":"call","occurred_at":"2026-09-02T08:00:00Z"}',
        '{"kind":"touchpoint","event_id":"tp","account_id":"hist-0004",'
        '"touchpoint_kind":"qbr","occurred_at":"2026-09-03T08:00:00Z"}',
    ]
    shared.write_bytes(history.read_bytes() + "\n".join(lines).encode() + b"\n")
    return shared


def test_shards_hold_whole_accounts_and_keep_linked_accounts_together(
    history: Path, tmp_path: Path
) -> None:
    """Every event in exactly one shard, an account's events in one shard only, the
    accounts sharing a ticket or a touchpoint id in the same one, the shards' sizes
    close (the largest account first, each to the emptiest shard)."""
    shared = _with_shared_keys(history, tmp_path)
    index = index_history([shared], tmp_path, lambda lines: None, **READ_NOW)
    shards = index.shards(3)
    every = index_lines(index)
    accounts_of: list[set[str]] = []
    for shard in shards:
        with shard.reader() as read:
            lines = read(slice(0, len(shard)))
        assert lines == [every[k] for k in shard.positions.tolist()]
        accounts_of.append({orjson.loads(line)["account_id"] for line in lines})
    positions = sorted(k for shard in shards for k in shard.positions.tolist())
    assert positions == list(range(len(index)))
    assert len(shards) == 3
    assert all(not (a & b) for a, b in combinations(accounts_of, 2))
    together = [{"hist-0001", "hist-0002"}, {"hist-0003", "hist-0004"}]
    for pair in together:
        assert any(pair <= accounts for accounts in accounts_of), pair
    # Each group to the emptiest shard: no two shards differ by more than a group.
    groups = Counter(orjson.loads(line)["account_id"] for line in every)
    for pair in together:
        groups[" ".join(sorted(pair))] = sum(groups.pop(account) for account in pair)
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= max(groups.values())


def test_worker_processes_replay_the_same_as_one(history: Path, tmp_path: Path) -> None:
    """Accounts replayed in two worker processes, a share each, give the replay of one
    process: the same snapshots in the same order, the same firings, including the
    accounts a moved ticket or a shared touchpoint id links."""
    shared = _with_shared_keys(history, tmp_path)
    ticks: list[tuple[int, int]] = []
    one = asyncio.run(rp.replay([shared], step_days=5, workers=1))
    two = asyncio.run(
        rp.replay([shared], step_days=5, workers=2, progress=lambda d, t: ticks.append((d, t)))
    )
    assert one.snapshots and one.firings
    assert two == one
    assert ticks[-1] == (len({s.day for s in one.snapshots}), ticks[-1][1]) and ticks[-1][1] > 0
