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


def make_progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=err,
        refresh_per_second=4,
    )
