"""Which file an import is reading. An import knows a file by its name, so that it
resumes it wherever it lies; by name alone, another file under a name imported before
was taken for it, and its lines up to the first file's length were skipped as "read by
an earlier run" (found from outside). So each file's first records are kept as a digest
(``import_files``): a file whose first records differ from those of the file of its
name read before is refused before anything of it is read. The first records stay when
lines are added at a file's end (a growing export resumes) and however it is
compressed; lines corrected in place are read again with ``--restart``, which takes the
file as it now is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scoring.history_files import UnreadableFile, read_lines
from shared.storage.db import among, upsert
from shared.storage.tables import import_files

# Records in a file's digest: enough to tell two exports apart (their first events
# differ in ids and times), few enough to read in a moment, whatever the file's size.
FINGERPRINT_RECORDS = 16


@dataclass(frozen=True)
class Fingerprint:
    digest: str
    records: int  # how many records it covers (fewer than FINGERPRINT_RECORDS: all of them)


class CopyOfAFileReadBefore(ValueError):
    """A file under a new name whose first records are those of a file imported before
    (or of another file of the same import)."""

    def __init__(self, path: Path, other: str):
        super().__init__(
            f"{path.name} begins as {other} does (its first records are "
            "the same), so none of it was imported: under another name its events would "
            "count again (the dedup window holds 48 hours). If it is the same export, "
            f"nothing is left to import; if it holds more at its end, import it as {other}"
        )


class NotTheFileReadBefore(ValueError):
    """A file named as one imported before, whose first records differ."""

    def __init__(self, path: Path):
        super().__init__(
            f"{path.name} is not the file of that name imported before (its first records "
            "differ), so none of it was imported. An import knows a file by its name, to "
            "resume it: give another file a name of its own, or, if you corrected lines "
            "of this one in place, run again with --restart"
        )


def fingerprint(path: Path, records: int = FINGERPRINT_RECORDS) -> Fingerprint:
    """A digest of the file's first ``records`` records as read (a file that cannot be
    read: of those that can; its reading reports the fault)."""
    digest = hashlib.sha256()
    count = 0
    try:
        for record in islice(read_lines(path), records):
            digest.update(bytes(record) + b"\n")
            count += 1
    except (OSError, UnreadableFile):
        pass
    return Fingerprint(digest.hexdigest(), count)


async def check_files(conn: AsyncConnection, files: Mapping[str, Path], restart: bool) -> None:
    """Refuse (``NotTheFileReadBefore``) a file of ``files`` (pseudo-topic → path) whose
    first records are not those of the file of its name read before, unless
    ``restart``; then keep each file's digest as it now is."""
    table = import_files.c
    rows = await conn.execute(select(import_files).where(among(conn, table.source, files)))
    before = {row.source: Fingerprint(row.fingerprint, row.records) for row in rows}
    keep = []
    this_run: dict[Fingerprint, str] = {}
    for source, path in files.items():
        now = fingerprint(path)
        then = before.get(source)
        if then is None and now.records:
            other = this_run.get(now) or await _copied(conn, source, now)
            if other is not None:
                raise CopyOfAFileReadBefore(path, other.removeprefix("import:"))
        this_run.setdefault(now, source)
        if then is not None and not restart:
            # A file that had fewer records than a digest covers may have grown since.
            same = now if now.records == then.records else fingerprint(path, then.records)
            if same != then:
                raise NotTheFileReadBefore(path)
        if now != then:
            keep.append({"source": source, "fingerprint": now.digest, "records": now.records})
    await upsert(conn, import_files, keep, keys=["source"], update=["fingerprint", "records"])


async def _copied(conn: AsyncConnection, source: str, now: Fingerprint) -> str | None:
    """Another file's pseudo-topic whose first records ``now`` repeats, if any."""
    table = import_files.c
    found = await conn.execute(
        select(table.source).where(
            table.fingerprint == now.digest,
            table.records == now.records,
            table.source != source,
        )
    )
    return found.scalars().first()
