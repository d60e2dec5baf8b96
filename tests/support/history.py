"""A history held whole in memory: the reference the backtest's index must equal."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from services.scoring.backtest.history_index import HistoryIndex
from services.scoring.history_files import read_lines
from shared.contracts.events import EVENT_ADAPTER, Event


def load_events(paths: Iterable[Path]) -> tuple[list[Event], int]:
    """Every event of the files, in time order (ties by event id), and the rejected
    lines' count."""
    events: list[Event] = []
    rejected = 0
    for path in paths:
        for line in read_lines(path):
            if not line.strip():
                continue
            try:
                events.append(EVENT_ADAPTER.validate_json(line))
            except ValidationError:
                rejected += 1
    events.sort(key=lambda event: (event.occurred_at, event.event_id))
    return events, rejected


def index_lines(index: HistoryIndex) -> list[bytes]:
    """Every line of the index, in its order (as one replay worker reads them)."""
    (shard,) = index.shards(1)
    with shard.reader() as read:
        return read(slice(0, len(shard)))


def index_events(index: HistoryIndex) -> list[Event]:
    return [EVENT_ADAPTER.validate_json(line) for line in index_lines(index)]
