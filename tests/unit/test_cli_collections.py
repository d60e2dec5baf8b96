"""The garbage collection thresholds each kind of command runs with (services/cli/)."""

from __future__ import annotations

import gc

import pytest
from typer.testing import CliRunner

from services.cli import app, serve
from services.cli.base import SERVICE_COLLECTIONS, collecting


def test_a_command_runs_with_its_thresholds_and_puts_them_back() -> None:
    before = gc.get_threshold()

    @collecting((12_345, 7, 99))
    def command() -> tuple[int, ...]:
        return gc.get_threshold()

    assert command() == (12_345, 7, 99)
    assert gc.get_threshold() == before


def test_the_thresholds_are_put_back_when_the_command_fails() -> None:
    before = gc.get_threshold()

    @collecting((12_345, 7, 99))
    def command() -> None:
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError):
        command()
    assert gc.get_threshold() == before


@pytest.mark.parametrize("command", ["scoring", "ingest", "alerts"])
def test_the_services_run_with_the_service_thresholds(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the service would run with, seen where it would start serving."""
    seen: list[tuple[int, ...]] = []
    monkeypatch.setattr(serve, "serve_service", lambda *args: seen.append(gc.get_threshold()))
    result = CliRunner().invoke(app, [command])
    assert result.exit_code == 0, result.output
    assert seen == [SERVICE_COLLECTIONS]
