"""Writing a bench's result: the JSON under ``bench/results`` and its plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lib.console import out


def save_results(result: dict[str, Any], path: Path, plot_path: Path, draw: Any) -> None:
    """Write the JSON, draw the plot and say where both went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    draw(result, plot_path)
    out.print(f"wrote {path} and {plot_path} (total {result['wall_seconds_total']} s)")
