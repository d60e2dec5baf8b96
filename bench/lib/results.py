"""Writing a bench's result: the JSON under ``bench/results`` and its plot."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from lib.console import out


def save_results(result: dict[str, Any], path: Path, plot_path: Path, draw: Any) -> None:
    """Write the JSON, draw the plot and say where both went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    draw(result, plot_path)
    out.print(f"wrote {path} and {plot_path} (total {result['wall_seconds_total']} s)")


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend (files only, no display), imported only
    when a bench draws: importing it costs a second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Lay the figure out, write it as a PNG at 100 dpi and free it."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    pyplot().close(fig)


RESULTS = Path(__file__).resolve().parent.parent / "results"


def add_output_options(parser: argparse.ArgumentParser, name: str) -> None:
    """``--out``/``--plot`` (``bench/results/<name>.json`` and ``.png``), ``--seed``, ``--keep``."""
    parser.add_argument("--out", type=Path, default=RESULTS / f"{name}.json", help="JSON results")
    parser.add_argument("--plot", type=Path, default=RESULTS / f"{name}.png", help="PNG plot")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")


@dataclass
class OutputOptions:
    """What ``add_output_options`` parses: the options every bench's own extend."""

    out: Path
    plot: Path
    seed: int
    keep: bool


def output_options(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed ``--out``, ``--plot``, ``--seed`` and ``--keep``, as ``Options`` keywords."""
    return {"out": args.out, "plot": args.plot, "seed": args.seed, "keep": args.keep}


def finish(
    result: dict[str, Any],
    started: float,
    opts: OutputOptions,
    show: Callable[[dict[str, Any]], None],
    draw: Any,
) -> int:
    """The bench's last steps: its total wall time (since the ``time.monotonic()``
    ``started``) into the result, the result shown, then saved as JSON and plot."""
    result["wall_seconds_total"] = round(time.monotonic() - started, 1)
    show(result)
    save_results(result, opts.out, opts.plot, draw)
    return 0
