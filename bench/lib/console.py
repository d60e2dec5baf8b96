"""Consoles and the progress bar every bench draws on stderr."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

err = Console(stderr=True)


out = Console(width=None if sys.stdout.isatty() else 120)


class RateColumn(ProgressColumn):
    """Events so far / time so far (rich's own speed is a sliding estimate)."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed:
            return Text("      … ev/s", style="cyan")
        return Text(f"{task.completed / elapsed:>7,.0f} ev/s", style="cyan")


def make_progress(*, rate: bool = True, info: bool = False) -> Progress:
    """Progress bars on stderr: description, bar, done/total, events/s (``rate``), time,
    and a free text field ``info`` a bench updates (``progress.update(task, info=...)``)."""
    columns: list[ProgressColumn] = [
        TextColumn("{task.description:<24}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
    ]
    if rate:
        columns.append(RateColumn())
    columns.append(TimeElapsedColumn())
    if info:
        columns.append(TextColumn("{task.fields[info]}"))
    return Progress(*columns, console=err, refresh_per_second=4)
