"""The README's configuration table is what ``scripts/settings_table.py`` prints from
``Settings``: it had drifted (six rows, among them a default) while saying so."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_table_is_the_scripts() -> None:
    script = runpy.run_path(str(ROOT / "scripts" / "settings_table.py"))
    table = script["table"]()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index(table.splitlines()[0])
    shown = readme[start : readme.index("\n\n", start)]
    assert shown == table, "run: python scripts/settings_table.py, and paste it in the README"
