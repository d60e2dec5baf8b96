"""``healthwatch accounts import``: a CRM export's rows sent to ``POST /v1/accounts``.

Through the API, not around it: the facts need a crm key there (they set owners and
tiers), and they reach scoring the way every account fact does. Rows are read and sent
a batch at a time, so a large export shows progress and is never held whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import httpx

from services.ingest.connectors.accounts_csv import (
    FALLBACK_ENCODING,
    UTF8,
    CsvError,
    Row,
    RowError,
    encoding_of,
    read_rows,
    undecodable,
)
from services.ingest.connectors.mapping import ConnectorMap

# Rows per request: well inside max_batch_events (1000) and max_body_bytes (1 MiB) for
# rows of ordinary facts, and few requests for a portfolio of thousands.
BATCH_ROWS = 500


class ImportRefused(Exception):
    """The API refused the import as a whole (a wrong key, the service down)."""


# Rows a check shows, to see the names read right.
SAMPLE_ROWS = 3


@dataclass
class ImportOutcome:
    imported: int = 0
    rows: int = 0
    errors: list[RowError] = field(default_factory=list)
    encoding: str = UTF8  # what the file was read in
    # The first rows' account ids and names, shown by a check (--check) to see that the
    # file's encoding was read right.
    sample: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # columns the format does not read


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
    encoding: str | None = None,
) -> ImportOutcome:
    """Read ``path`` as ``fmt`` and send its facts with ``send`` (None: check only);
    ``encoding``: None for UTF-8, or ``gb18030`` (``file_encoding``)."""
    outcome = ImportOutcome()
    try:
        outcome.encoding = file_encoding(path, encoding)
    except CsvError as exc:
        raise CsvError(f"{path.name}: {exc}") from None
    with path.open(encoding=outcome.encoding, newline="") as lines:
        header, rows = read_rows(lines, fmt, mapping, now)
        outcome.ignored = [column for column in header.ignored if column.strip()]
        for batch in _batches(rows):
            outcome.rows += len(batch)
            good = [r for r in batch if r.fact is not None]
            outcome.errors += [e for r in batch for e in r.errors]
            for row in good[: SAMPLE_ROWS - len(outcome.sample)]:
                if row.fact is not None:
                    outcome.sample.append((row.fact.account_id, row.fact.name or ""))
            if good and send is not None:
                _send(send, good, outcome)
            elif good:
                outcome.imported += len(good)
            progress(outcome.rows)
    return outcome


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as raw:
        while chunk := raw.read(1 << 20):
            yield chunk


def file_encoding(path: Path, asked: str | None) -> str:
    """The encoding to read ``path`` in, the whole file checked before anything is sent
    (read as it was sent, a Latin-1 row past the first batch said "not imported" after
    500 rows had been, found from outside): UTF-8, or GB18030 when ``asked`` (the
    command line's ``--encoding``); CsvError saying which would do otherwise."""
    if asked is None or asked.lower().replace("-", "") in ("utf8", "utf8sig"):
        return encoding_of(lambda: _chunks(path), fallback=False)
    problem = undecodable(_chunks(path), FALLBACK_ENCODING)
    if problem is not None:
        raise CsvError(f"it is not GB18030 ({problem}): nothing was sent")
    return FALLBACK_ENCODING


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
            raise ImportRefused(
                f"cannot reach {url} ({exc}): is the ingest API up, and at this address? "
                "(--url; it defaults to HEALTHWATCH_HOST and HEALTHWATCH_INGEST_PORT)"
            ) from exc

    return send
