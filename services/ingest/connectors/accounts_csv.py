"""Account facts from CSV: HubSpot's company export, Salesforce's account export, or our
own columns (the connectors file's ``[csv.hubspot]``, ``[csv.salesforce]``, ``[csv.csv]``).

Rows are read one at a time (``read_rows``), so a CLI import of a large portfolio shows
progress and holds one batch at most. Each row is a fact or its errors, each naming the
row (its line in the file, as ``sed -n Np`` shows it: the header is line 1) and the
column. A file that cannot be read as such a CSV at all is a ``CsvError``.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from services.ingest.connectors.mapping import ConnectorMap, mapped_facts
from shared.contracts.events import AccountFacts, backwards_contract
from shared.i18n import DEFAULT_LANGUAGE, N_, Choices, worded
from shared.web import FORMULA_STARTS

# Excel in Chinese saves "CSV (逗号分隔)" in GB18030 (GBK's superset), not UTF-8: the
# first file a Chinese team uploads. Tried when a file is not UTF-8. Korean, Japanese and
# Big5 files may read as GB18030 too, as other characters: the dashboard's preview shows
# the names before anything is sent, and the command line takes it only when asked
# (``--encoding gb18030``); text in the private use area (where Big5 lands) is refused.
FALLBACK_ENCODING = "gb18030"
UTF8 = "utf-8-sig"  # a BOM, as Excel writes it, is dropped
PRIVATE_USE = re.compile("[\ue000-\uf8ff]")

# A CRM's notes column may hold long texts; past this a "cell" is a broken quote.
MAX_CELL_CHARS = 100_000


class CsvError(ValueError):
    """The file is no CSV of the format: no header, no account id column, neither UTF-8
    nor GB18030."""


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    message: str  # English
    # The message as a template of ``values``, for the import page's language (None:
    # the message as it is, pydantic's and the CSV reader's).
    template: str | None = None
    values: dict[str, object] = field(default_factory=dict)

    def worded(self, language: str) -> str:
        if self.template is None or language == DEFAULT_LANGUAGE:
            return self.message  # English as it was said: pydantic's own words too
        return worded(language, self.template, self.values or None)


@dataclass
class Row:
    """One data row: its fact, or why it is none."""

    row: int
    fact: AccountFacts | None
    errors: list[RowError] = field(default_factory=list)


@dataclass
class Header:
    """The columns the format maps (column -> fact) and the ones it leaves aside, and
    the encoding the file was read in."""

    mapped: dict[str, str]
    ignored: list[str]
    encoding: str = UTF8

    @property
    def fallback(self) -> bool:
        """Read as GB18030, not UTF-8 (the preview says so, to check the names)."""
        return self.encoding == FALLBACK_ENCODING


def header_of(columns: list[str], fmt: str, mapping: ConnectorMap) -> Header:
    if len(columns) == 1 and (mark := next((m for m in ";\t|" if m in columns[0]), None)):
        # European Excel saves "CSV" with semicolons: its header read as one column, and
        # the refusal named a missing id column (found from outside).
        raise CsvError(
            f"its header reads as one column ({columns[0][:60]!r}): the file is separated "
            f"by {mark!r}, not commas; save it as CSV (comma-separated)"
        )
    table = mapping.columns[fmt]
    mapped = {c: table[c.strip()] for c in columns if c.strip() in table}
    if "account_id" not in mapped.values():
        id_column = next((c for c, t in table.items() if t == "account_id"), "account_id")
        raise CsvError(
            f"no {id_column!r} column: a {fmt} file needs one (the account id); its header "
            f"has {', '.join(repr(c) for c in columns[:12]) or 'nothing'}"
        )
    return Header(mapped, [c for c in columns if c not in mapped])


def read_rows(
    lines: Iterable[str], fmt: str, mapping: ConnectorMap, now: datetime
) -> tuple[Header, Iterator[Row]]:
    """The header, and the rows as they are read."""
    csv.field_size_limit(MAX_CELL_CHARS)
    reader = csv.reader(iter(lines))
    try:
        columns = next(reader)
    except StopIteration:
        raise CsvError("the file is empty: it needs a header row and rows") from None
    except csv.Error as exc:
        raise CsvError(f"line 1: {exc}") from None
    header = header_of(columns, fmt, mapping)
    first_row: dict[str, int] = {}  # account id → the row that had it first

    def rows() -> Iterator[Row]:
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Row(reader.line_num, None, [RowError(reader.line_num, "(row)", str(exc))])
                continue
            if any(c.strip() for c in cells):
                row = _row(
                    reader.line_num, dict(zip(columns, cells, strict=False)), header, mapping, now
                )
                yield _once_per_account(row, first_row)

    return header, rows()


def _once_per_account(row: Row, first_row: dict[str, int]) -> Row:
    """The row, or its refusal if its account had a row before in the file: both went
    with one time, and which one's values were kept was left to chance (found from
    outside). The first is kept."""
    account = row.fact.account_id if row.fact is not None else None
    if account is None:
        return row
    if account in first_row:
        template = N_(
            "account {account!r} is on row {first} already: one row per account (this one "
            "was not imported)"
        )
        values: dict[str, object] = {"account": account, "first": first_row[account]}
        refused = RowError(row.row, "account_id", template.format(**values), template, values)
        return Row(row.row, None, [*row.errors, refused])
    first_row[account] = row.row
    return row


def _row(
    line: int, cells: dict[str, str], header: Header, mapping: ConnectorMap, now: datetime
) -> Row:
    values = [
        (column, target, unguarded(cells.get(column) or ""))
        for column, target in header.mapped.items()
    ]
    facts, problems = mapped_facts(mapping, values)
    errors = [RowError(line, p.field, p.message, p.template, p.values) for p in problems]
    column_of = {target: column for column, target in header.mapped.items()}
    if not facts.get("account_id"):
        empty = N_("is empty: every row needs an id")
        errors.append(RowError(line, column_of["account_id"], empty, empty))
    raw: dict[str, Any] = {
        "kind": "account",
        # A fresh id, as POST /v1/accounts gives one: an import back to an earlier value
        # must not be dropped as a duplicate; facts merge to the same state anyway.
        "event_id": f"import:{uuid.uuid4().hex}",
        "occurred_at": now.isoformat(),
        **facts,
    }
    # Validated even when a value could not be read, so the row's every error shows.
    try:
        fact = AccountFacts.model_validate(raw)
    except ValidationError as exc:
        fact = None
        reported = {e.column for e in errors}
        for e in exc.errors(include_url=False):
            target = ".".join(str(part) for part in e["loc"]) or "(row)"
            column = column_of.get(target.split(".")[0], target)
            if column not in reported:
                template, context = wording_of(e)
                errors.append(RowError(line, column, e["msg"], template, context))
    if fact is not None and (backwards := backwards_contract(fact)):
        errors.append(RowError(line, column_of.get("contract_end", "contract_end"), backwards))
    return Row(line, None if errors else fact, errors)


# pydantic's refusals a row's cells earn most, by type: pydantic's own English templates
# (filled with the error's context they give its message), which connectors.po
# translates. Any other refusal, or one whose message a pydantic upgrade reworded, keeps
# pydantic's English.
PYDANTIC_TEMPLATES = {
    "missing": N_("Field required"),
    "greater_than": N_("Input should be greater than {gt}"),
    "greater_than_equal": N_("Input should be greater than or equal to {ge}"),
    "less_than": N_("Input should be less than {lt}"),
    "less_than_equal": N_("Input should be less than or equal to {le}"),
    "string_type": N_("Input should be a valid string"),
    "enum": N_("Input should be {expected}"),
    "literal_error": N_("Input should be {expected}"),
    "float_parsing": N_("Input should be a valid number, unable to parse string as a number"),
    "int_parsing": N_("Input should be a valid integer, unable to parse string as an integer"),
    "int_from_float": N_("Input should be a valid integer, got a number with a fractional part"),
    "bool_parsing": N_("Input should be a valid boolean, unable to interpret input"),
    "finite_number": N_("Input should be a finite number"),
}
# The choices in an enum's or a literal's "expected": "'a', 'b' or 'c'".
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


def unguarded(cell: str) -> str:
    """A cell without the apostrophe our exports put before text a spreadsheet would run
    as a formula (``shared.web.spreadsheet_cell``): an export imported back had made an
    account ``'=evil`` beside ``=evil`` (found from outside)."""
    if cell.startswith("'") and cell[1:2] and cell[1:2] in FORMULA_STARTS:
        return cell[1:]
    return cell


def wording_of(error: ErrorDetails) -> tuple[str | None, dict[str, object]]:
    """The template and values of a pydantic error, (None, {}) for one not worded."""
    template = PYDANTIC_TEMPLATES.get(error["type"])
    context: dict[str, object] = dict(error.get("ctx", {}))
    try:
        if template is None or template.format(**context) != error["msg"]:
            return None, {}
    except (KeyError, IndexError, ValueError):
        return None, {}
    if "expected" in context:
        context["expected"] = Choices(_QUOTED.findall(str(context["expected"])))
    return template, context


def undecodable(chunks: Iterable[bytes], encoding: str) -> str | None:
    """Where ``chunks`` (a file, in pieces) stop reading in ``encoding`` ("line L, byte
    B"), None if they read whole. The place is counted across the pieces: a character
    begun in one piece is placed where it began."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, line = 0, 1
    for chunk in chunks:
        held = len(decoder.getstate()[0])  # a character's first bytes, from before
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            at = offset - held + exc.start
            line += chunk[: max(0, exc.start - held)].count(b"\n")
            return f"line {line}, byte {at}"
        if encoding == FALLBACK_ENCODING and PRIVATE_USE.search(text):
            return f"from line {line}: characters no Chinese text has"
        offset += len(chunk)
        line += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return f"it ends inside a character, byte {offset}"
    return None


def encoding_of(chunks: Callable[[], Iterable[bytes]], *, fallback: bool) -> str:
    """UTF8, else (``fallback``) GB18030, whichever the whole of ``chunks()`` (read once
    for each try) reads in; CsvError naming where the UTF-8 reading failed otherwise,
    and, without ``fallback``, that GB18030 would read it."""
    problem = undecodable(chunks(), "utf-8")
    if problem is None:
        return UTF8
    as_gb18030 = undecodable(chunks(), FALLBACK_ENCODING) is None
    if as_gb18030 and fallback:
        return FALLBACK_ENCODING
    if as_gb18030:
        raise CsvError(
            f"the file is not UTF-8 ({problem}) but reads as GB18030, as Excel in Chinese saves "
            "CSV; nothing was sent: check its names with --check --encoding gb18030, then "
            "import it with --encoding gb18030 (or save it as CSV UTF-8)"
        )
    raise CsvError(
        f"the file is neither UTF-8 nor GB18030 ({problem}): nothing was sent; save it as CSV UTF-8"
    )


def read_all(
    data: bytes, fmt: str, mapping: ConnectorMap, now: datetime
) -> tuple[Header, list[Row]]:
    """A whole (uploaded) file's rows, read as UTF-8 or GB18030 (``encoding_of``: the
    preview shows the rows before they are sent)."""
    encoding = encoding_of(lambda: [data], fallback=True)
    header, rows = read_rows(io.StringIO(data.decode(encoding), newline=""), fmt, mapping, now)
    header.encoding = encoding
    return header, list(rows)
