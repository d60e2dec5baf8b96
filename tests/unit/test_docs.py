"""The README stays true: every setting documented, CI runs the README's test command."""

from __future__ import annotations

from pathlib import Path

from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [n for n in Settings.model_fields if f"`HEALTHWATCH_{n.upper()}`" not in readme]
    assert missing == []


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text().splitlines()
    assert readme[3].startswith("make demo") and readme[4].startswith("make test")
    assert "make test" in (ROOT / ".ci" / "run").read_text()
