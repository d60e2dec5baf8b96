"""``healthwatch dead-letters`` on the embedded bus: the records set aside, listed with
where they came from and why, and sent back to their topic (Kafka's in
tests/faults/test_stream_poison.py). Operators had the topic's name and nothing to read
it with (found from outside)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from services.cli import app
from shared.bus.base import OutMessage, Record
from shared.bus.deadletter import MAX_COPY_BYTES, dead_letter_message
from shared.bus.embedded import EmbeddedBus
from shared.storage.db import create_engine, migrate
from shared.storage.tables import bus_log


async def _set_aside(url: str) -> None:
    engine = create_engine(url)
    await migrate(engine)
    bus = EmbeddedBus(engine)
    poison = Record("hw.usage", 0, 41, b"acme", b'{"kind": "usage", "event_id": "e1"}')
    huge = Record("hw.usage", 0, 42, b"acme", b"x" * (MAX_COPY_BYTES + 1))
    letters = [dead_letter_message(r, "OverflowError: no", "hw.deadletter") for r in (poison, huge)]
    # Another producer's record on the topic: no headers, a value of control characters.
    stranger = OutMessage("hw.deadletter", None, b"\x00\x1b[2J" * 10, {})
    await bus.send_many([*letters, stranger])
    await engine.dispose()


async def _sent_to(url: str, topic: str) -> list[bytes]:
    engine = create_engine(url)
    async with engine.connect() as conn:
        rows = await conn.execute(select(bus_log.c.value).where(bus_log.c.topic == topic))
        values = [row.value for row in rows]
    await engine.dispose()
    return values


def test_dead_letters_are_listed_and_sent_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}"
    monkeypatch.setenv("HEALTHWATCH_DATABASE_URL", url)
    monkeypatch.setenv("HEALTHWATCH_KAFKA_BOOTSTRAP", "")
    monkeypatch.setenv("HEALTHWATCH_LANGUAGE", "en")
    asyncio.run(_set_aside(url))
    runner = CliRunner()
    listed = runner.invoke(app, ["dead-letters", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    lines = [orjson.loads(line) for line in listed.stdout.splitlines() if line.startswith("{")]
    assert [(x.get("source_offset"), x.get("reason")) for x in lines] == [
        ("41", "OverflowError: no"),
        ("42", "OverflowError: no"),
        (None, None),
    ]
    first, cut = lines[0]["ref"], lines[1]["ref"]
    table = runner.invoke(app, ["dead-letters", "list"])
    assert "hw.usage[0]@41" in table.output and "(cut)" in table.output
    refused = runner.invoke(app, ["dead-letters", "replay", cut])
    assert refused.exit_code == 2 and "first 64 KiB" in refused.output
    unknown = runner.invoke(app, ["dead-letters", "replay", "0:999999"])
    assert unknown.exit_code == 2 and "no dead letter 0:999999" in unknown.output
    nameless = runner.invoke(app, ["dead-letters", "replay", lines[2]["ref"]])
    assert nameless.exit_code == 2 and "names no topic" in nameless.output
    sent = runner.invoke(app, ["dead-letters", "replay", first])
    assert sent.exit_code == 0, sent.output
    assert asyncio.run(_sent_to(url, "hw.usage")) == [b'{"kind": "usage", "event_id": "e1"}']
