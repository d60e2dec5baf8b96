"""How the dev welcome names the healthwatch command the user can run."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli import serve


def test_a_venv_command_under_the_folder_is_named_by_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", [str(tmp_path / ".venv" / "bin" / "healthwatch"), "dev"])
    assert serve._own_command() == ".venv/bin/healthwatch"


def test_an_installed_or_module_command_is_named_healthwatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["/usr/local/bin/healthwatch", "dev"])
    assert serve._own_command() == "healthwatch"
    monkeypatch.setattr("sys.argv", [str(tmp_path / "services" / "cli.py"), "dev"])
    assert serve._own_command() == "healthwatch"
