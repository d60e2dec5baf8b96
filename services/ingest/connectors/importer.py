"""``healthwatch accounts import``: a CRM export's rows sent to ``POST /v1/accounts``.

Through the API, not around it: the facts need a crm key there (they set owners and
tiers), and they reach scoring the way every account fact does. Rows are read and sent
a batch at a time, so a large export shows progress and is never held whole.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import httpx

from services.ingest.connectors.accounts_csv import (
    FALLBACK_ENCODING,
    CsvError,
    Row,
    RowError,
    read_rows,
)
from services.ingest.connectors.mapping import ConnectorMap

# Rows per request: well inside max_batch_events (1000) and max_body_bytes (1 MiB) for
# rows of ordinary facts, and few requests for a portfolio of thousands.
BATCH_ROWS = 500


class ImportRefused(Exception):
    """The API refused the import as a whole (a wrong key, the service down)."""


@dataclass
class ImportOutcome:
    imported: int = 0
    rows: int = 0
    errors: list[RowError] = field(default_factory=list)
    encoding: str = "utf-8-sig"  # what the file was read in


def _batches(rows: Iterator[Row]) -> Iterator[list[Row]]:
    while batch := list(islice(rows, BATCH_ROWS)):
        yield batch


def import_accounts(
    path: Path,
    fmt: str,
    mapping: ConnectorMap,
    now: datetime,
    *,
    send: Callable[[list[dict[str, Any]]], httpx.Response] | None,
    progress: Callable[[int], None] = lambda rows: None,
) -> ImportOutcome:
    """Read ``path`` as ``fmt`` and send its facts with ``send`` (None: check only)."""
    outcome = ImportOutcome()
    outcome.encoding = encoding_of_file(path)
    with path.open(encoding=outcome.encoding, newline="") as lines:
        _header, rows = read_rows(lines, fmt, mapping, now)
        for batch in _batches(rows):
            outcome.rows += len(batch)
            good = [r for r in batch if r.fact is not None]
            outcome.errors += [e for r in batch for e in r.errors]
            if good and send is not None:
                _send(send, good, outcome)
            elif good:
                outcome.imported += len(good)
            progress(outcome.rows)
    return outcome


def encoding_of_file(path: Path) -> str:
    """``utf-8-sig``, else GB18030 (``accounts_csv.FALLBACK_ENCODING``: Excel's Chinese
    CSV), whichever the whole file reads in, before anything is sent; CsvError naming
    where the UTF-8 reading failed otherwise. Read as it was sent, a Latin-1 row past
    the first batch said "not imported" after 500 rows had been, at a byte counted from
    a buffer's start (found from outside)."""
    problem = _undecodable(path, "utf-8")
    if problem is None:
        return "utf-8-sig"
    if _undecodable(path, FALLBACK_ENCODING) is None:
        return FALLBACK_ENCODING
    raise CsvError(
        f"{path.name} is neither UTF-8 nor GB18030 ({problem}): nothing was sent; "
        "save it as CSV UTF-8"
    )


def _undecodable(path: Path, encoding: str) -> str | None:
    """Where the file stops reading in ``encoding`` ("line L, byte B"), None if whole."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, line = 0, 1
    with path.open("rb") as raw:
        while chunk := raw.read(1 << 20):
            held = len(decoder.getstate()[0])  # a character's first bytes, from before
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                at = offset - held + exc.start
                line += chunk[: max(0, exc.start - held)].count(b"\n")
                return f"line {line}, byte {at}"
            offset += len(chunk)
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return f"it ends inside a character, byte {offset}"
    return None


def _send(
    send: Callable[[list[dict[str, Any]]], httpx.Response], good: list[Row], outcome: ImportOutcome
) -> None:
    body = [r.fact.model_dump(mode="json", exclude_none=True) for r in good if r.fact]
    answer = send(body)
    if answer.status_code == 202:
        outcome.imported += len(good)
        return
    if answer.status_code == 422:
        refused = answer.json().get("rejected", [])
        outcome.imported += len(good) - len(refused)
        for rejection in refused:
            row = good[rejection["index"]].row
            outcome.errors += [RowError(row, e["field"], e["message"]) for e in rejection["errors"]]
        return
    try:
        message = answer.json().get("message", answer.text)
    except ValueError:
        message = answer.text
    if answer.status_code in (401, 403):
        # The API's own words name the ingest scope; account facts need a crm key.
        message += " (account facts need a crm key: healthwatch keys create --role crm)"
    raise ImportRefused(f"{answer.status_code}: {message}")


def http_sender(url: str, key: str) -> Callable[[list[dict[str, Any]]], httpx.Response]:
    """Each batch as ``{"accounts": [...]}`` to ``url``'s POST /v1/accounts."""
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    def send(facts: list[dict[str, Any]]) -> httpx.Response:
        try:
            return client.post("/v1/accounts", json={"accounts": facts})
        except httpx.TransportError as exc:
            raise ImportRefused(f"cannot reach {url} ({exc}): is the ingest API up?") from exc

    return send
