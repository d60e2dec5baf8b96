"""Settings whose defaults depend on others."""

from __future__ import annotations

import pytest

from shared.config import POSTGRES_BATCH_MAX, SQLITE_BATCH_MAX, Settings

POSTGRES = "postgresql+asyncpg://healthwatch@db:5432/healthwatch"


@pytest.mark.parametrize(
    ("database_url", "records"),
    [("sqlite+aiosqlite:///healthwatch.db", SQLITE_BATCH_MAX), (POSTGRES, POSTGRES_BATCH_MAX)],
)
def test_the_batch_cap_defaults_by_database(database_url: str, records: int) -> None:
    """Larger batches on PostgreSQL (each account rescored once per batch); on SQLite a
    batch holds the write lock ingest waits for, so it stays smaller."""
    assert Settings(_env_file=None, database_url=database_url).scoring_batch_max == records
    assert POSTGRES_BATCH_MAX > SQLITE_BATCH_MAX


def test_a_batch_cap_given_is_kept_on_either_database() -> None:
    for url in ("sqlite+aiosqlite:///healthwatch.db", POSTGRES):
        assert (
            Settings(_env_file=None, database_url=url, scoring_batch_max=500).scoring_batch_max
            == 500
        )


def test_the_batch_cap_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHWATCH_SCORING_BATCH_MAX", "7000")
    monkeypatch.setenv("HEALTHWATCH_DATABASE_URL", POSTGRES)
    assert Settings(_env_file=None).scoring_batch_max == 7000
