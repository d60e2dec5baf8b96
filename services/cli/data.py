"""Commands on an install's data: an account's ``report``, ``accounts import`` of a
CRM export, ``export`` of every account, and ``simulate`` (traffic or a history file)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import date, datetime, timezone, tzinfo
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.ext.asyncio import AsyncEngine

from services.cli.base import (
    accounts_app,
    app,
    console,
    database_shown,
    on_database,
    run_until_stopped,
)
from services.cli.logs import setup_logging
from services.cli.text import cli_language, t, worded
from services.simulate import Simulator
from shared.config import Settings
from shared.i18n import LANGUAGES, translate


@app.command()
def report(
    account: Annotated[str, typer.Argument(help="Account id")],
    kind: Annotated[str, typer.Option(help="usage (30 days), bimonthly or qbr")] = "usage",
    end: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD (default today)")] = None,
    lang: Annotated[
        str | None, typer.Option(help="en or zh-CN (default: HEALTHWATCH_LANGUAGE)")
    ] = None,
    pdf: Annotated[
        bool, typer.Option("--pdf", help="A PDF (also when --out ends in .pdf)")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="File (default: <account>-<kind>.html, or .pdf)")
    ] = None,
) -> None:
    """Write an account's report as print-ready HTML, or as a PDF."""
    from services.reports.api import file_part
    from services.reports.data import KINDS, UnknownAccount
    from services.reports.document import Ask, document
    from services.reports.fmt import Fmt
    from services.reports.pdf import PdfUnavailable

    if kind not in KINDS:
        raise typer.BadParameter(t("--kind must be one of {choices}", choices=", ".join(KINDS)))
    if lang is not None and lang not in LANGUAGES:
        raise typer.BadParameter(t("--lang must be one of {choices}", choices=", ".join(LANGUAGES)))
    from services.scoring.queries import AHEAD_OF_UTC, account_zone

    settings = Settings()
    # A malformed --end stops here, before the database; the day is the account's.
    _report_day(end, timezone(AHEAD_OF_UTC))
    pdf = pdf or (out is not None and out.suffix.lower() == ".pdf")
    fmt = Fmt(lang or settings.language, settings.currency)

    async def write(engine: AsyncEngine) -> bytes:
        async with engine.connect() as conn:
            # "Today" in the account's zone, as the API's and the dashboard's reports: on
            # the service's clock (UTC) a Shanghai account's morning was left out.
            zone = await account_zone(conn, account, settings.zone)
            last = _report_day(end, zone)
            return await document(conn, Ask(account, kind, last, fmt, zone, pdf=pdf))

    try:
        body = asyncio.run(on_database(settings, write))
    except UnknownAccount:
        where = escape(database_shown(settings.database_url))
        console.print(
            t(
                "[red]no account {account}[/] in {where}: check the id (GET /v1/accounts "
                "lists them) or the database (HEALTHWATCH_DATABASE_URL)",
                account=escape(repr(account)),
                where=where,
            )
        )
        raise typer.Exit(1) from None
    except PdfUnavailable as exc:
        console.print(t("[red]no PDF[/]: {reason}", reason=worded(exc)))
        raise typer.Exit(2) from None
    target = out or Path(f"{file_part(account)}-{kind}.{'pdf' if pdf else 'html'}")
    target.write_bytes(body)
    console.print(t("[green]wrote[/] {target}", target=escape(str(target))))


def _report_day(end: str | None, zone: tzinfo, option: str = "--end") -> date:
    """``--end`` as a day within the calendar the queries take (default today in
    ``zone``)."""
    from services.reports.api import today_in
    from services.scoring.queries import FIRST_DAY, LAST_DAY

    try:
        last = date.fromisoformat(end) if end else today_in(zone)
    except ValueError as exc:
        raise typer.BadParameter(
            t("{option} {day!r}: give a day as YYYY-MM-DD", option=option, day=end)
        ) from exc
    if not FIRST_DAY <= last <= LAST_DAY:
        raise typer.BadParameter(
            t(
                "{option}: give a day from {first} to {last}",
                option=option,
                first=FIRST_DAY,
                last=LAST_DAY,
            )
        )
    if last > today_in(zone):  # its days to come would read as days without use
        raise typer.BadParameter(
            t(
                "{option} {day}: a day to come; give today or an earlier day",
                option=option,
                day=last,
            )
        )
    return last


@accounts_app.command("import")
def accounts_import(
    file: Annotated[Path, typer.Argument(help="CSV export (UTF-8; see --encoding)")],
    format: Annotated[
        str, typer.Option(help="hubspot (companies), salesforce (accounts) or csv (ours)")
    ] = "csv",
    url: Annotated[
        str | None,
        typer.Option(
            help="Ingest base URL (default: HEALTHWATCH_HOST and HEALTHWATCH_INGEST_PORT)"
        ),
    ] = None,
    key: Annotated[str, typer.Option(envvar="HEALTHWATCH_KEY", help="A crm key")] = "",
    check: Annotated[bool, typer.Option("--check", help="Only read and map; send nothing")] = False,
    encoding: Annotated[
        str | None,
        typer.Option(help="gb18030 for Excel's Chinese CSV (default: UTF-8, checked whole)"),
    ] = None,
) -> None:
    """Send a CRM export's account facts to POST /v1/accounts (docs/connectors.md)."""
    from datetime import UTC

    from rich.progress import Progress, TextColumn

    from services.ingest.connectors.accounts_csv import FALLBACK_ENCODING, CsvError
    from services.ingest.connectors.importer import ImportRefused, http_sender, import_accounts
    from services.ingest.connectors.mapping import FORMATS, load_mapping

    if format not in FORMATS:
        raise typer.BadParameter(t("--format must be one of {choices}", choices=", ".join(FORMATS)))
    if encoding is not None and encoding.lower() not in ("gb18030", "utf-8", "utf8"):
        raise typer.BadParameter(t("--encoding is {fallback} or utf-8", fallback=FALLBACK_ENCODING))
    if not file.is_file():
        console.print(t("[red]no such file:[/] {files}", files=escape(str(file))))
        raise typer.Exit(2)
    if not key and not check:
        console.print(t("[red]a crm key is needed:[/] healthwatch keys create --role crm"))
        raise typer.Exit(2)
    settings = Settings()
    mapping = load_mapping(settings.connectors_file)
    send = None if check else http_sender(url or settings.ingest_url, key)
    rows_read = TextColumn("{task.description}: {task.completed} " + t("rows"))
    with Progress(rows_read, console=console) as bar:
        task = bar.add_task(file.name, total=None)
        try:
            done = import_accounts(
                file,
                format,
                mapping,
                datetime.now(UTC),
                send=send,
                progress=lambda rows: bar.update(task, completed=rows),
                encoding=encoding,
            )
        except (CsvError, ImportRefused) as exc:
            console.print(t("[red]not imported[/]: {reason}", reason=worded(exc)))
            raise typer.Exit(1) from None
    counts = {"done": done.imported, "rows": done.rows, "file": escape(file.name)}
    if check:
        console.print(t("[green]would import[/] {done} of {rows} rows from {file}", **counts))
    else:
        console.print(t("[green]imported[/] {done} of {rows} rows from {file}", **counts))
    if done.ignored:
        shown = ", ".join(escape(c) for c in done.ignored[:12])
        more = len(done.ignored) - 12
        console.print(
            t(
                "[yellow]columns not read[/] (the {format} format has no fact for them): {columns}",
                format=format,
                columns=shown + (f", … (+{more})" if more > 0 else ""),
            )
        )
    if check and done.sample:
        read = done.encoding.upper().removesuffix("-SIG")
        console.print(
            t("first rows as read ({encoding}): check that the names read right", encoding=read)
        )
        for account, name in done.sample:
            console.print(f"  {escape(account)}: {escape(name)}")
    if done.errors:
        n = len(done.errors)
        if check:
            console.print(t("[yellow]{n} problem(s)[/]; those rows would not be imported:", n=n))
        else:
            console.print(t("[yellow]{n} problem(s)[/]; those rows were not imported:", n=n))
        for e in done.errors[:50]:
            console.print(
                t(
                    "  row {row}, {column}: {message}",
                    row=e.row,
                    column=escape(e.column),
                    message=escape(e.message),
                )
            )
        if len(done.errors) > 50:
            console.print(
                t("  …and {n} more: fix these, then run --check again", n=len(done.errors) - 50)
            )
        raise typer.Exit(1)


@app.command("export")
def export_cmd(
    kind: Annotated[str, typer.Argument(help="accounts, scores or history")],
    out: Annotated[Path, typer.Option(help="File to write ('-': standard output)")],
    format: Annotated[str, typer.Option(help="csv or parquet")] = "csv",
    start: Annotated[
        str | None,
        typer.Option("--from", help="history: first day, YYYY-MM-DD (default: 90 days back)"),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="history: last day (default today)")
    ] = None,
) -> None:
    """Write every account's facts, current scores or daily history as CSV or Parquet."""
    from services.scoring.export import FORMATS, KINDS, Ask, export_chunks, history_days
    from shared.web import ClientError

    if kind not in KINDS:
        raise typer.BadParameter(t("KIND must be one of {choices}", choices=", ".join(KINDS)))
    if format not in FORMATS:
        raise typer.BadParameter(t("--format must be one of {choices}", choices=", ".join(FORMATS)))
    if kind != "history" and (start or end):
        raise typer.BadParameter(
            t("--from and --to choose days of history; {kind} has none", kind=kind)
        )
    settings = Settings()
    try:
        first = date.fromisoformat(start) if start else None
    except ValueError:
        raise typer.BadParameter(
            t("{option} {day!r}: give a day as YYYY-MM-DD", option="--from", day=start)
        ) from None
    try:
        last = _report_day(end, settings.zone, "--to")
        first, last = history_days(first, last, lambda: last)
    except (ValueError, ClientError) as exc:
        raise typer.BadParameter(f"--from/--to: {exc}") from exc

    to_stdout = str(out) == "-"  # as Unix tools read "-": a pipe, not a file named "-"

    async def write(engine: AsyncEngine) -> int:
        size = 0
        with contextlib.nullcontext(sys.stdout.buffer) if to_stdout else out.open("wb") as f:
            async for chunk in export_chunks(
                engine, Ask(kind, None, first, last), format, bom=not to_stdout
            ):
                size += f.write(chunk)
        return size

    size = asyncio.run(on_database(settings, write))
    what = ""
    if kind == "history":
        # The default range is a part of the history: said, or it reads as all of it.
        what = t(": daily history {first} to {last}", first=first, last=last)
        what += "" if start else t(" (--from for earlier)")
    where = t("standard output") if to_stdout else escape(str(out))
    Console(stderr=True, soft_wrap=True).print(
        t("[green]wrote[/] {where}{what} ({size} bytes)", where=where, what=what, size=size)
    )


@app.command()
def simulate(
    url: Annotated[
        str | None,
        typer.Option(
            help="Ingest base URL (default: HEALTHWATCH_HOST and HEALTHWATCH_INGEST_PORT)"
        ),
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option(
            help="Base URL of the plans and cases APIs (production: `healthwatch web`'s; "
            "default: --url, as dev mode serves both)"
        ),
    ] = None,
    key: Annotated[str, typer.Option(envvar="HEALTHWATCH_KEY", help="Ingest API key")] = "",
    accounts: Annotated[int, typer.Option(help="Number of simulated accounts", min=1)] = 50,
    live: Annotated[bool, typer.Option(help="Keep sending live traffic after the history")] = True,
    seed: int = 7,
    history_out: Annotated[
        Path | None, typer.Option(help="Instead: write months of history to this NDJSON(.gz)")
    ] = None,
    churn_out: Annotated[Path, typer.Option(help="With --history-out: churn CSV")] = Path(
        "churn.csv"
    ),
    months: Annotated[
        int, typer.Option(help="With --history-out: months of history (2 or more)", min=2)
    ] = 12,
    shape: Annotated[
        str,
        typer.Option(
            help="With --history-out: product shape — crm (B2B seats, the handbook's), "
            "subscription (single-user app, 8 event types) or transactional (purchases)"
        ),
    ] = "crm",
) -> None:
    """Send realistic traffic for N accounts to an ingest URL, or write a history file."""
    if history_out is not None:
        from datetime import UTC, datetime, timedelta

        from services.simulate_history import SHAPES, write_history

        if shape not in SHAPES:
            raise typer.BadParameter(
                t("--shape must be one of {choices}", choices=", ".join(SHAPES))
            )
        written, churned = write_history(
            history_out,
            churn_out,
            accounts=accounts,
            days=months * 30,
            # Ending yesterday: every event lies in the past, so the file imports as
            # it is (a line later than now + max_future_skew is refused).
            end=datetime.now(UTC).date() - timedelta(days=1),
            seed=seed,
            shape=shape,
            progress=lambda n: console.print(t("{n} events written…", n=n)),
        )
        console.print(
            t(
                "wrote {written} events to {out}; {churned} accounts churned ({churn_out})",
                written=written,
                out=history_out,
                churned=churned,
                churn_out=churn_out,
            )
        )
        return
    if not key:
        console.print(
            t(
                "[red]a key with the ingest and crm scopes (read and respond too, for the "
                "demo's plans and cases) is needed:[/] "
                "healthwatch keys create --scope ingest --scope crm --scope read --scope respond"
            )
        )
        raise typer.Exit(2)
    setup_logging("INFO", "%(asctime)s %(message)s")
    from rich.progress import Progress

    with Progress(console=console) as progress:
        lang = cli_language()  # once: the progress below is called for every batch
        task = progress.add_task(translate(lang, "history"), total=accounts)

        def report(stage: str, done: int, total: int) -> None:
            if stage == "history":
                progress.update(task, completed=done)
            else:
                progress.update(task, description=translate(lang, "live: {n} events sent", n=done))

        sim = Simulator(
            url or Settings().ingest_url,
            key,
            accounts,
            seed=seed,
            progress=report,
            api_url=api_url,
            language=lang,
        )
        run_until_stopped(lambda stop: sim.run(stop, live=live))
