"""The history commands: ``import``, ``backtest`` and ``calibrate``."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import orjson
import typer
from prometheus_client import CollectorRegistry
from rich.markup import escape

from services.cli.base import BATCH_COLLECTIONS, app, collecting, console
from services.cli.logs import service_logging, setup_logging
from services.cli.text import cli_language, t, worded
from services.scoring.backfill import ImportReport, check_file_names, import_files
from services.scoring.history_files import UnreadableFile
from services.scoring.import_files import CopyOfAFileReadBefore, NotTheFileReadBefore
from services.scoring.import_lock import ImportLockLost, ImportRunning
from services.scoring.metrics import ScoringMetrics
from services.scoring.processor import ScoringProcessor
from services.scoring.usage import DEDUP_HOURS
from shared.bus.factory import create_bus
from shared.clock import utcnow
from shared.config import Settings
from shared.i18n import translate
from shared.storage.db import create_engine, migrate

# The history ``backtest`` and ``calibrate`` replay, and its churn outcomes.
HistoryFiles = Annotated[
    list[Path], typer.Argument(help="History: NDJSON, CSV (.gz accepted) or Parquet event files")
]
ChurnFile = Annotated[
    Path | None, typer.Option(help="CSV of account_id,churn_date (besides churn events)")
]
WORKERS_OPTION = typer.Option(
    min=1,
    help="Processes replaying the history, a share of the accounts each (default and most: "
    "one per core; one per 200,000 events by default); the result is the same for any number",
)


# Seconds between an import's progress lines in a log (a terminal shows a live bar).
IMPORT_LOG_EVERY_S = 10.0


class _ImportLog:
    """Each file's records read as log lines: at most every IMPORT_LOG_EVERY_S while the
    import reads, and each file's last count when it ends (``close``)."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._when: dict[str, float] = {}  # file → when its count was last logged
        self._logged: dict[str, int] = {}  # file → the count logged then
        self._read: dict[str, tuple[int, int]] = {}  # file → its records read, in all

    def __call__(self, name: str, read: int, total: int) -> None:
        self._read[name] = (read, total)
        now = time.monotonic()
        if now - self._when.get(name, float("-inf")) >= IMPORT_LOG_EVERY_S:
            self._when[name] = now
            self._emit(name, read, total)

    def close(self) -> None:
        for name, (read, total) in self._read.items():
            if self._logged.get(name) != read:
                self._emit(name, read, total)

    def _emit(self, name: str, read: int, total: int) -> None:
        self._logged[name] = read
        total = max(total, read)  # a file written to while it is read
        share = 100 * read // total if total else 100
        self._log.info("import: %s: %d of %d records read (%d%%)", name, read, total, share)


@app.command("import")
@collecting(BATCH_COLLECTIONS)
def import_cmd(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="NDJSON, CSV (.gz accepted) or Parquet files, each in time order; several "
            "are read side by side, merged by event time"
        ),
    ],
    restart: Annotated[
        bool,
        typer.Option(help="Read the lines rejected before again (after fixing them in place)"),
    ] = False,
) -> None:
    """Load historical events through the scoring code (resumable; sends no alerts)."""
    settings = Settings()
    service_logging(settings)
    # A band change of the past per account and day (564 lines for 300 accounts) buried
    # the progress lines; the score history holds them.
    logging.getLogger("services.scoring.processor").setLevel(logging.WARNING)
    folders = [str(f) for f in files if f.is_dir()]
    if folders:
        console.print(
            t(
                "[red]a folder, not a file:[/] {folders}: name its files "
                "(for example folder/*.ndjson.gz)",
                folders=escape(", ".join(folders)),
            )
        )
        raise typer.Exit(2)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        console.print(t("[red]no such file:[/] {files}", files=escape(", ".join(missing))))
        raise typer.Exit(2)
    try:
        check_file_names(files)
    except ValueError as exc:
        console.print(t("[red]not started:[/] {reason}", reason=worded(exc)))
        raise typer.Exit(2) from None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    async def main() -> ImportReport:
        engine = create_engine(settings.database_url)
        # The alerts still open at the end go to the alerts topic (opened, not notified).
        bus = create_bus(settings, engine)
        try:
            if settings.embedded:
                await migrate(engine)
            await bus.producer.start()
            metrics = ScoringMetrics(CollectorRegistry())
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                MofNCompleteColumn(),
                TextColumn(t("records")),
                TimeRemainingColumn(),
                console=console,
                # Off the terminal the lines below say it; the bar's last frame was
                # dumped at the end of the log (found from outside).
                disable=not console.is_terminal,
            ) as progress:
                # No total until the file's first reading has counted its records.
                tasks = {f.name: progress.add_task(f.name, total=None) for f in files}
                logged = _ImportLog(logging.getLogger("healthwatch.import"))

                def report(name: str, read: int, total: int) -> None:
                    progress.update(tasks[name], completed=read, total=max(total, read))
                    if not console.is_terminal:  # a log, a CI job: lines instead of a bar
                        logged(name, read, total)

                try:
                    return await import_files(
                        files,
                        lambda sink: ScoringProcessor(engine, sink, settings, metrics),
                        progress=report,
                        restart=restart,
                        alerts_to=bus.producer,
                    )
                finally:
                    logged.close()  # where each file got to, however the import ended
        finally:
            await bus.producer.stop()
            await engine.dispose()

    try:
        result = _run_until_stopped(main())
    except KeyboardInterrupt:
        console.print(
            t(
                "[yellow]stopped[/]: what was read up to the last batch saved is imported; "
                "run the same command again to go on from there"
            )
        )
        raise typer.Exit(130) from None
    except (ImportRunning, NotTheFileReadBefore, CopyOfAFileReadBefore) as exc:
        console.print(t("[red]not started:[/] {reason}", reason=worded(exc)))
        raise typer.Exit(2) from None
    except ImportLockLost as exc:
        console.print(t("[red]stopped:[/] {reason}", reason=worded(exc)))
        raise typer.Exit(1) from None
    if result.stopped is not None:
        console.print(
            t(
                "[red]stopped:[/] {reason}; the {imported} events read before it are "
                "imported: run the import again once the file is whole (it goes on from "
                "there)",
                reason=escape(result.stopped),
                imported=result.imported,
            )
        )
        _print_rejected(result)
        raise typer.Exit(1)
    repeated = (
        t(", {n} repeated event ids counted once", n=result.repeated) if result.repeated else ""
    )
    again = (
        t(" ({n} of days scored before, worked out again)", n=result.days_rescored)
        if result.days_rescored
        else ""
    )
    console.print(
        t(
            "[green]imported[/] {imported} events from {files} file(s) ({before} lines read "
            "by an earlier run{repeated}); {swept} accounts brought up to today; {days} "
            "daily scores recorded{again}; {not_sent} alert messages of the past were not "
            "sent; {opened} alerts still true were opened without notices",
            imported=result.imported,
            files=result.files,
            before=result.skipped_already_imported,
            repeated=repeated,
            swept=result.swept,
            days=result.days_scored,
            again=again,
            not_sent=result.alerts_not_sent,
            opened=result.alerts_opened,
        )
    )
    _say_the_gap(result, settings)
    if result.before_window:
        console.print(
            t(
                "[yellow]{n} event(s) are more than {hours} hours older than their "
                "account's newest event imported before[/]: they were counted, but any "
                "that an earlier import read too (overlapping exports) now count twice. "
                "Import overlapping exports in one run, or cut a new export where the last "
                "one ended",
                n=result.before_window,
                hours=DEDUP_HOURS,
            )
        )
    if result.late:
        console.print(
            t(
                "[yellow]{n} usage event(s) were not counted[/]: they are more than "
                "{days} days older than their account's newest event already imported "
                "(HEALTHWATCH_LATE_GRACE_DAYS). Import a history oldest first, or all of it in "
                "one run (files are merged by event time)",
                n=result.late,
                days=round(settings.late_grace.total_seconds() / 86400),
            )
        )
    if result.rejected_before:
        console.print(
            t(
                "[yellow]{n} line(s) rejected by an earlier run[/] are still to fix: fix "
                "them in place and run again with --restart",
                n=result.rejected_before,
            )
        )
    if result.rejected or result.rejected_before:
        _print_rejected(result)
        raise typer.Exit(1)
    if result.late:
        raise typer.Exit(1)


def _run_until_stopped(job: Coroutine[Any, Any, ImportReport]) -> ImportReport:
    """``asyncio.run``, a SIGTERM (a job's time limit, systemd, ``kill``) stopping it as
    Ctrl-C does, saying what was kept: it ended with a bare "Terminated" (found from
    outside). As asyncio does for Ctrl-C, the signal cancels the task (a transaction
    under way rolls back at its ``await``), raised as KeyboardInterrupt once it ends."""

    async def stoppable() -> ImportReport:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        assert task is not None
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await job
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        return asyncio.run(stoppable())
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None


# Days between the history's last and today past which an import says today's scores
# count them as quiet: a nightly export ends yesterday, a weekly one up to a week ago.
GAP_DAYS = 2


def _say_the_gap(result: ImportReport, settings: Settings) -> None:
    """A history ending days before today: the sweep scored today as if nothing had
    happened since, and an export a week old turned 33 of 50 accounts red with 44
    "edge of churn" alerts, without a word (found from outside)."""
    if not result.swept or result.last_day is None:
        return
    gap = (utcnow().astimezone(ZoneInfo(settings.timezone)).date() - result.last_day).days
    if gap < GAP_DAYS:
        return
    console.print(
        t(
            "[yellow]the history ends {day}, {n} days before today[/]: today's scores count "
            "those days as quiet (no use, no tickets), which can turn accounts red and open "
            "alerts. Import the events since, or start sending them live, before trusting "
            "today's scores",
            day=result.last_day.isoformat(),
            n=gap,
        )
    )


# Rejected lines listed after an import; the rest are counted (each is in the log).
REJECTS_SHOWN = 20


def _print_rejected(result: ImportReport) -> None:
    if not result.rejected:
        return
    console.print(
        t(
            "[yellow]{n} line(s) rejected[/]: fix them and run again with --restart (only "
            "the rejected lines are read again; fix them in place, so that every line "
            "keeps its number):",
            n=len(result.rejected),
        )
    )
    for name, line, reason in result.rejected[:REJECTS_SHOWN]:
        console.print(f"  {escape(name)}:{line}: {escape(reason)}")
    if len(result.rejected) > REJECTS_SHOWN:
        console.print(
            t(
                "  … and {n} more: the log has every one (HEALTHWATCH_LOG_LEVEL=WARNING or lower)",
                n=len(result.rejected) - REJECTS_SHOWN,
            )
        )


@app.command()
@collecting(BATCH_COLLECTIONS)
def backtest(
    files: HistoryFiles,
    churn: ChurnFile = None,
    horizons: Annotated[
        str, typer.Option(help="Days ahead to predict, comma-separated")
    ] = "30,60,90",
    step_days: Annotated[
        int,
        typer.Option(
            help="Score every account, quiet ones included, every N days; the alert rules "
            "step on those days (1: daily)",
            min=1,
        ),
    ] = 7,
    model: Annotated[
        Path | None, typer.Option(help="A model TOML file (default: built in)")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for report.json and report.html")] = Path(
        "backtest-report"
    ),
    workers: Annotated[int | None, WORKERS_OPTION] = None,
) -> None:
    """Replay history through the scoring code and report how well the score predicted churn."""
    from services.scoring.backtest import report as rpt
    from services.scoring.model.schema import DEFAULT_MODEL, parse_model
    from services.scoring.model_check import check_model

    source = (model or DEFAULT_MODEL).read_text(encoding="utf-8")
    try:
        health_model = parse_model(source)
        check_model(health_model)
    except ValueError as exc:  # ModelError lists every problem with its location
        raise typer.BadParameter(str(exc)) from exc
    try:
        wanted = [int(h) for h in horizons.split(",") if h.strip()]
    except ValueError:
        raise typer.BadParameter(
            t(
                "--horizons {horizons!r}: days ahead, whole numbers with commas, e.g. 30,60,90",
                horizons=horizons,
            )
        ) from None
    if any(h <= 0 for h in wanted):
        raise typer.BadParameter(t("--horizons are days ahead: whole numbers above 0"))
    result = _replayed(files, churn, source=source, step_days=step_days, workers=workers)
    built = rpt.build(result, wanted, health_model)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_bytes(orjson.dumps(rpt.public(built), option=orjson.OPT_INDENT_2))
    (out / "report.html").write_text(rpt.html_report(built), encoding="utf-8")
    print(rpt.text(built))
    console.print(
        t("written {json} and {html}", json=out / "report.json", html=out / "report.html")
    )


@app.command()
@collecting(BATCH_COLLECTIONS)
def calibrate(
    files: HistoryFiles,
    churn: ChurnFile = None,
    horizon: Annotated[int, typer.Option(help="Days ahead to predict churn", min=1)] = 30,
    step_days: Annotated[int, typer.Option(help="Score every account every N days", min=1)] = 7,
    out: Annotated[Path, typer.Option(help="The calibrated model's TOML file")] = Path(
        "calibrated-model.toml"
    ),
    version: Annotated[str, typer.Option(help="The new model's version")] = "calibrated",
    workers: Annotated[int | None, WORKERS_OPTION] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="Base model TOML (default: the handbook's): its groups, settings and "
            "declared \\[behaviour] ratios (e.g. dislikes per like) carry over"
        ),
    ] = None,
) -> None:
    """Learn an explainable health model (a curve and a weight per measure) from the
    history, judged out of sample beside the model it starts from and the baselines."""
    from services.scoring.backtest.calibration import calibrate as fit_model
    from services.scoring.backtest.calibration import text as calibration_text
    from services.scoring.model.schema import load_default_model, parse_model
    from services.scoring.model_check import check_model

    source = model.read_text(encoding="utf-8") if model else None
    try:
        base = parse_model(source) if source else load_default_model()
        check_model(base)
    except ValueError as exc:  # ModelError lists every problem with its location
        raise typer.BadParameter(str(exc)) from exc
    result = _replayed(files, churn, source=source, step_days=step_days, workers=workers)
    try:
        _, toml_text, report = fit_model(result, horizon, base, version)
    except ValueError as exc:
        console.print(
            t(
                "[red]cannot calibrate:[/] {reason}. A model is fitted on the earlier part of "
                "the history and needs churned accounts there whose measures differ from the "
                "rest: give a longer history or more accounts (`healthwatch backtest` judges "
                "the handbook's model on this one).",
                reason=worded(exc),
            )
        )
        raise typer.Exit(1) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(toml_text, encoding="utf-8")
    print(calibration_text(report, horizon))
    if any(w["check"] == "worse_than_default" for w in report["warnings"]):
        console.print(
            t("written {out}, but keep the model it started from: see the warning above", out=out)
        )
        return
    console.print(
        t(
            "written {out}: review it (diff it against GET /v1/health-model), then apply it "
            "with PUT /v1/health-model",
            out=out,
        )
    )


def _replayed(
    files: list[Path],
    churn: Path | None,
    *,
    source: str | None,
    step_days: int,
    workers: int | None,
) -> Any:
    """The history replayed (``backtest``, ``calibrate``), with progress; a user's
    mistake (an unreadable churn file or history, no events, no churn) ends the command
    with one line saying what to fix."""
    from rich.progress import Progress

    from services.scoring.backtest.replay import ChurnFileError, read_churn_csv, replay

    try:
        outcomes = read_churn_csv(churn) if churn else {}
    except ChurnFileError as exc:
        console.print(t("[red]cannot read the churn file:[/] {reason}", reason=worded(exc)))
        raise typer.Exit(2) from None
    setup_logging("WARNING")
    lang = cli_language()  # once: the progress below is called for every batch
    with Progress(console=console, disable=not console.is_terminal) as progress:
        reading = progress.add_task(translate(lang, "reading history"), total=None)
        task = progress.add_task(translate(lang, "replaying history"), total=None)
        logged = [0]  # lines read when last logged

        def read(lines: int) -> None:
            progress.update(
                reading, description=translate(lang, "reading history: {n} lines", n=lines)
            )
            # A log, a CI job: a line per half a million lines read instead of a bar.
            if not console.is_terminal and lines - logged[0] >= 500_000:
                logged[0] = lines
                console.print(translate(lang, "replay: {n} lines read", n=lines))

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)
            if not console.is_terminal and (done == total or done % max(1, total // 10) == 0):
                console.print(
                    translate(
                        lang,
                        "replay: {done}/{total} evaluation days scored (every --step-days)",
                        done=done,
                        total=total,
                    )
                )

        try:
            result = asyncio.run(
                replay(
                    files,
                    churn=outcomes,
                    model_source=source,
                    step_days=step_days,
                    progress=report,
                    reading=read,
                    workers=workers,
                )
            )
        except UnreadableFile as exc:
            console.print(t("[red]stopped:[/] {reason}", reason=worded(exc)))
            raise typer.Exit(1) from None
    if result.rejected:
        console.print(
            t(
                "[yellow]{n} line(s) rejected[/] (not JSON, not an event, or dated in the "
                "future) and left out:",
                n=result.rejected,
            )
        )
        for name, line, reason in result.rejects:
            console.print(f"  {escape(name)}:{line}: {escape(reason)}")
        if result.rejected > len(result.rejects):
            console.print(
                t(
                    "  … and {n} more: `healthwatch import` of the files into a scratch "
                    "database lists each with its reason",
                    n=result.rejected - len(result.rejects),
                )
            )
    if not result.events:
        console.print(t("[red]no events in the history:[/] check the files (NDJSON, CSV, Parquet)"))
        raise typer.Exit(2)
    if not result.churn:
        console.print(t("[red]no churn outcomes:[/] pass --churn FILE or include churn events"))
        raise typer.Exit(2)
    return result
