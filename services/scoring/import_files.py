"""Which file an import is reading. An import knows a file by its name, so that it
resumes it wherever it lies; by name alone, another file under a name imported before
was taken for it, and its lines up to the first file's length were skipped as "read by
an earlier run" (found from outside). So each file's first records are kept as digests
(``import_files``), and before anything is read:

- a file whose first records differ from those of the file of its name read before is
  refused (``NotTheFileReadBefore``); only the records rejected before may differ
  (corrected in place, or a last line cut off as it was written);
- a file under a new name whose first records are those of a file read before (or of
  another file of the same run) is refused (``CopyOfAFileReadBefore``): under another
  name its events would count again, the dedup window holding 48 hours.

The first records stay when lines are added at a file's end (a growing export resumes),
however it is compressed and in whichever format it is written: a record with an
``event_id`` is known by its account and id, so the same export saved again as Parquet
or CSV is the same file (it had counted every event twice, exit 0, found from outside);
a record without one by its bytes. Digests kept by a version that knew records by their
bytes alone (no ``ids`` mark) are compared as such.

Only files something was read of count (a stored offset or rejected records): an
import stopped before its first batch leaves a digest that binds nothing. A file read
by a version before these digests is taken, once, as the same file, and logged so.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring.history_files import UnreadableFile, read_lines
from shared.storage.db import among, upsert
from shared.storage.tables import import_files

log = logging.getLogger(__name__)

# Records in a file's digests: enough to tell two exports apart (their first events
# differ in ids and times), few enough to read in a moment, whatever the file's size.
FINGERPRINT_RECORDS = 16

# Of ``topics``, those an import read something of (a stored offset, rejected records).
ReadBefore = Callable[[AsyncConnection, list[str]], Awaitable[set[str]]]


# The mark of digests that know a record by its account and event id (``_digest``).
BY_IDS = "ids"


@dataclass(frozen=True)
class Fingerprint:
    """A digest per record of a file's first FINGERPRINT_RECORDS (all, if fewer);
    ``by_ids``: records with an event id digested by it, not by their bytes."""

    hashes: tuple[str, ...]
    by_ids: bool = True

    @property
    def text(self) -> str:
        return " ".join((BY_IDS, *self.hashes) if self.by_ids else self.hashes)

    @classmethod
    def of(cls, text: str) -> Fingerprint:
        words = text.split()
        if words[:1] == [BY_IDS]:
            return cls(tuple(words[1:]))
        return cls(tuple(words), by_ids=False)

    def differing(self, earlier: Fingerprint) -> set[int]:
        """The records of ``earlier`` this file does not begin with (lines it has
        gained at its end are no difference)."""
        mine = self.hashes
        return {k for k, h in enumerate(earlier.hashes) if k >= len(mine) or mine[k] != h}


class CopyOfAFileReadBefore(ValueError):
    """A file under a new name whose first records are those of a file imported before
    (or of another file of the same import)."""

    def __init__(self, path: Path, other: str):
        super().__init__(
            f"{path.name} begins as {other} does (its first records are the same), so "
            "none of it was imported: under another name its events would count again "
            "(the dedup window holds 48 hours). If it is the same export, nothing is left "
            f"to import; if it holds more at its end, import it as {other}"
        )


class NotTheFileReadBefore(ValueError):
    """A file named as one imported before, whose first records differ."""

    def __init__(self, path: Path):
        super().__init__(
            f"{path.name} is not the file of that name imported before (its first records "
            "differ), so none of it was imported. An import knows a file by its name, to "
            "resume it: give another file a name of its own (if you corrected lines "
            "rejected before in place, run again with --restart)"
        )


def fingerprint(path: Path, *, by_ids: bool = True) -> Fingerprint:
    """The digests of the file's first records as read (a file that cannot be read: of
    those that can; its reading reports the fault)."""
    ids, raw = fingerprints(path)
    return ids if by_ids else raw


def fingerprints(path: Path) -> tuple[Fingerprint, Fingerprint]:
    """The file's digests as kept now and as an earlier version kept them (of bytes),
    from one read of its first records (a Parquet file's first rows are a row group)."""
    records: list[bytes] = []
    try:
        for record in islice(read_lines(path), FINGERPRINT_RECORDS):
            records.append(bytes(record))  # those read before a fault, too
    except (OSError, UnreadableFile):
        pass
    return (
        Fingerprint(tuple(_digest(r, by_ids=True) for r in records)),
        Fingerprint(tuple(_digest(r, by_ids=False) for r in records), by_ids=False),
    )


def _digest(record: bytes, by_ids: bool) -> str:
    """A record's digest: of its account and event id when it has them (``by_ids``),
    whatever the format wrote around them; else of its bytes."""
    if by_ids:
        try:
            event = orjson.loads(record)
        except orjson.JSONDecodeError:
            event = None
        if isinstance(event, dict) and isinstance(event.get("event_id"), str):
            # An id is its kind's (``state.dedup_id``): an NPS export numbered like the
            # usage export imported before was refused as its copy (found in review).
            # Usage keeps the bare id, as its files were kept before.
            kind = event.get("kind", "usage")
            ids = [event.get("account_id"), event["event_id"]]
            key = orjson.dumps(ids if kind == "usage" else [*ids, kind])
            return hashlib.sha256(b"id:" + key).hexdigest()[:16]
    return hashlib.sha256(record).hexdigest()[:16]


async def check_files(
    conn: AsyncConnection,
    files: Mapping[str, Path],
    read_before: ReadBefore,
    rejected: Mapping[str, set[int]],
) -> None:
    """Refuse a file of ``files`` (pseudo-topic → path) that is not the one of its name
    read before, or that repeats another (module docstring); then keep each file's
    digests as it now is. ``rejected``: each file's records rejected before, which may
    differ (an import with ``--restart`` reads them again)."""
    table = import_files.c
    rows = await conn.execute(select(import_files).where(among(conn, table.source, files)))
    before = {row.source: Fingerprint.of(row.fingerprint) for row in rows}
    started = await read_before(conn, list(files))
    keep = []
    this_run: dict[Fingerprint, str] = {}
    for source, path in files.items():
        now, as_bytes = fingerprints(path)
        then = before.get(source)
        older = then is not None and not then.by_ids  # kept by an earlier version
        seen = as_bytes if older else now
        if source in started:
            if then is None:
                log.warning(
                    "import: %s was read by a version that knew files by name alone: "
                    "taken as the same file",
                    path.name,
                )
            # Records rejected before may differ, with --restart or without: corrected in
            # place, or a last line cut off as it was written, whole now that the export
            # grew (refused as another file, found from outside).
            elif seen.differing(then) - rejected.get(source, set()):
                raise NotTheFileReadBefore(path)
        elif now.hashes:
            other = this_run.get(now) or await _copied(conn, source, now, as_bytes, read_before)
            if other is not None:
                raise CopyOfAFileReadBefore(path, other.removeprefix("import:"))
        this_run.setdefault(now, source)
        if now != then:
            keep.append({"source": source, "fingerprint": now.text, "records": len(now.hashes)})
    await upsert(conn, import_files, keep, keys=["source"], update=["fingerprint", "records"])


async def _copied(
    conn: AsyncConnection,
    source: str,
    now: Fingerprint,
    as_bytes: Fingerprint,
    read_before: ReadBefore,
) -> str | None:
    """Another file read before whose first records ``now`` repeats, if any: as digests
    are kept now, or by their bytes (``as_bytes``) as an earlier version kept them."""
    table = import_files.c
    texts = {now.text, as_bytes.text}
    found = await conn.execute(
        select(table.source).where(table.fingerprint.in_(texts), table.source != source)
    )
    candidates = list(found.scalars())
    started = await read_before(conn, candidates) if candidates else set()
    return next((c for c in sorted(candidates) if c in started), None)
