"""``healthwatch dead-letters``: the records scoring and alerts set aside (the
dead-letter topic, ``hw.deadletter``), listed with why and where each came from, and
sent back to their own topic once what refused them is fixed (a new release, a
corrected model). Operators had the topic's name and nothing to read it with (found
from outside).

A dead letter holds at most 64 KiB of its record (``shared/bus/deadletter.py``); one cut
shorter is not sent back, its original is named instead. A record sent back is read as
any other: an event within the dedup window of its first copy counts once.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer
from aiokafka import AIOKafkaConsumer
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.cli.base import app, console, on_database
from services.cli.text import t
from shared.bus.base import OutMessage
from shared.bus.factory import DEADLETTER_TOPIC, create_bus
from shared.config import Settings
from shared.storage.tables import bus_log

dead_app = typer.Typer(
    help="Records scoring and alerts set aside: list them, send them back.", no_args_is_help=True
)
app.add_typer(dead_app, name="dead-letters")

# How long a read of the topic waits for records it knows are there (its end offsets):
# a broker answering its metadata answers its fetches within this.
READ_TIMEOUT_S = 30.0
# How long it waits for the topic's partitions: a broker that answers gives them within
# a second or two; none after this, the topic was never made (nothing set aside yet).
METADATA_WAIT_S = 10.0


@dataclass(frozen=True)
class Letter:
    partition: int
    offset: int
    at: datetime | None
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def ref(self) -> str:
        """How the command names it: ``partition:offset``."""
        return f"{self.partition}:{self.offset}"


async def read_letters(settings: Settings, engine: AsyncEngine) -> list[Letter]:
    """Every dead letter the topic holds, oldest first per partition."""
    topic = settings.topic(DEADLETTER_TOPIC)
    if settings.embedded:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(bus_log).where(bus_log.c.topic == topic).order_by(bus_log.c.offset)
            )
            return [
                Letter(0, r.offset, r.created_at, r.key, r.value or b"", dict(r.headers or {}))
                for r in rows
            ]
    return await _read_kafka(settings.kafka_bootstrap, topic)


async def _read_kafka(bootstrap: str, topic: str) -> list[Letter]:
    # Subscribed without a group: every partition is this reader's, from its start.
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    letters: list[Letter] = []
    try:
        tps: list[Any] = []
        with contextlib.suppress(TimeoutError):  # no such topic yet: no dead letters
            async with asyncio.timeout(METADATA_WAIT_S):
                while not (tps := sorted(consumer.assignment())):
                    await consumer.getmany(timeout_ms=200)  # the topic's metadata comes
        if not tps:
            return []
        async with asyncio.timeout(READ_TIMEOUT_S):
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                    letters += [_letter(tp.partition, r) for r in records if r.offset < ends[tp]]
    finally:
        await consumer.stop()
    return sorted(letters, key=lambda letter: (letter.partition, letter.offset))


def _letter(partition: int, record: Any) -> Letter:
    return Letter(
        partition,
        record.offset,
        datetime.fromtimestamp(record.timestamp / 1000, UTC),
        record.key,
        record.value or b"",
        # Another producer's record on the topic may carry no value for a header.
        {k: (v or b"").decode(errors="replace") for k, v in record.headers},
    )


@dead_app.command("list")
def dead_list(
    limit: Annotated[int, typer.Option(help="Show the newest this many", min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line")] = False,
) -> None:
    """The dead letters, newest last: where each came from, why, and its size."""
    settings = Settings()
    letters = asyncio.run(on_database(settings, lambda e: read_letters(settings, e)))
    shown = sorted(letters, key=lambda x: x.at or datetime.min.replace(tzinfo=UTC))[-limit:]
    if as_json:
        for letter in shown:
            line = {"ref": letter.ref, "at": letter.at, **letter.headers}
            print(orjson.dumps(line).decode())
        return
    table = Table(
        title=t("{n} dead letter(s); the newest {shown}", n=len(letters), shown=len(shown))
    )
    for column in ("ref", "at", "from", "size", "reason"):
        table.add_column(t(column))
    for letter in shown:
        h = letter.headers
        source = "{}[{}]@{}".format(
            *(h.get(k, "?") for k in ("source_topic", "source_partition", "source_offset"))
        )
        size = h.get("original_size", str(len(letter.value)))
        if h.get("truncated") == "true":
            size += t(" (cut)")
        at = letter.at.isoformat(timespec="seconds") if letter.at else ""
        table.add_row(letter.ref, at, escape(source), size, escape(h.get("reason", "")[:300]))
    console.print(table)
    if letters:
        console.print(t("send one back once fixed: healthwatch dead-letters replay REF …"))


@dead_app.command("replay")
def dead_replay(
    refs: Annotated[list[str], typer.Argument(help="Dead letters as list shows them: 0:17")],
) -> None:
    """Send dead letters back to the topic each came from, as they were."""
    settings = Settings()
    sent = asyncio.run(on_database(settings, lambda e: send_back(settings, e, refs)))
    console.print(t("[green]sent back[/] {n} record(s) to their topics", n=sent))


async def send_back(settings: Settings, engine: AsyncEngine, refs: list[str]) -> int:
    """Publish the dead letters ``refs`` (``partition:offset``) to their source topics;
    how many. Refused (BadParameter) for one not there, or one cut short."""
    letters = {x.ref: x for x in await read_letters(settings, engine)}
    if nameless := [r for r in refs if r in letters and not letters[r].headers.get("source_topic")]:
        # A record another producer put on the topic names no source: nowhere to send it.
        raise typer.BadParameter(
            t(
                "{refs} names no topic it came from: it cannot be sent back",
                refs=", ".join(nameless),
            )
        )
    if missing := [ref for ref in refs if ref not in letters]:
        raise typer.BadParameter(
            t(
                "no dead letter {refs}: see healthwatch dead-letters list",
                refs=", ".join(missing),
            )
        )
    if cut := [letters[ref] for ref in refs if letters[ref].headers.get("truncated") == "true"]:
        h = cut[0].headers
        raise typer.BadParameter(
            t(
                "{ref} holds the first 64 KiB of its record only: send the original again "
                "({source}[{partition}]@{offset}, sha256 {sha})",
                ref=cut[0].ref,
                source=h.get("source_topic"),
                partition=h.get("source_partition"),
                offset=h.get("source_offset"),
                sha=h.get("sha256"),
            )
        )
    messages = [
        OutMessage(letters[ref].headers["source_topic"], letters[ref].key, letters[ref].value)
        for ref in refs
    ]
    bus = create_bus(settings, engine)
    await bus.producer.start()
    try:
        await bus.producer.send_many(messages)
    finally:
        await bus.producer.stop()
    return len(messages)
