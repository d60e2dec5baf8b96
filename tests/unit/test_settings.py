"""Settings whose defaults depend on others."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.alerts.channels.text import redact_urls
from services.cli.mistakes import startup_mistake
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


@pytest.mark.parametrize(
    "url",
    ["hooks.slack.com/services/T0/B0/SECRET_HOOK", "htps://hooks.slack.com/services/SECRET_HOOK"],
)
def test_a_webhook_address_without_its_scheme_is_refused_without_quoting_it(url: str) -> None:
    """Taken as set, its failures quoted it (a webhook's path is its credential)."""
    for field in ("slack_webhook_url", "webhook_url"):
        with pytest.raises(ValidationError) as refused:
            Settings(_env_file=None, **{field: url})  # type: ignore[call-arg]
        line = startup_mistake(refused.value)
        assert line is not None and "http:// or https://" in line and "SECRET" not in line


def test_client_errors_quoting_a_webhook_path_are_cut_to_the_host() -> None:
    quoted = "<InvalidUrlClientError hooks.slack.com/services/T0/B0/SECRET>"
    assert redact_urls(quoted) == "<InvalidUrlClientError hooks.slack.com/…>"
    assert "SECRET" not in redact_urls("URL('htps://hooks.slack.com/services/SECRET')")
    assert redact_urls("Cannot connect to host hooks.slack.com:443") == (
        "Cannot connect to host hooks.slack.com:443"
    )


@pytest.mark.parametrize("sender", ["healthwatch", "cs team", "a@x, b@y", "Name <>"])
def test_a_from_address_that_is_no_mailbox_is_refused_at_start(sender: str) -> None:
    """Its address alone is the envelope sender: without one, every email failed at its
    first send."""
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, smtp_from=sender)
    line = startup_mistake(refused.value)
    assert line is not None and "one email address" in line
    for good in ("hw@example.com", "健康监测 <hw@example.cn>", '"Ops @ HQ" <hw@example.com>'):
        assert Settings(_env_file=None, smtp_from=good).smtp_from == good


def test_a_short_dashboard_secret_is_refused_at_start_without_showing_it() -> None:
    """A short secret can be found from any session cookie by trying (found from
    outside); empty keeps a random one per process."""
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, dashboard_secret="hunter2-hunter2")
    line = startup_mistake(refused.value)
    assert line is not None and "32 characters" in line and "hunter2" not in line
    assert Settings(_env_file=None, dashboard_secret="").dashboard_secret.get_secret_value() == ""
    long = "0123456789abcdef" * 4
    assert Settings(_env_file=None, dashboard_secret=long).dashboard_secret.get_secret_value() == (
        long
    )


@pytest.mark.parametrize(
    ("given", "language"),
    [
        ("zh_CN", "zh-CN"),
        ("zh", "zh-CN"),
        ("zh_CN.UTF-8", "zh-CN"),
        ("zh-cn", "zh-CN"),
        ("en_US.UTF-8", "en"),
        ("en", "en"),
        ("zh-CN", "zh-CN"),
    ],
)
def test_the_language_may_be_written_as_a_locale_names_it(given: str, language: str) -> None:
    """``HEALTHWATCH_LANGUAGE=zh_CN`` was refused: only "zh-CN" was taken (found from
    outside)."""
    assert Settings(_env_file=None, language=given).language == language


def test_a_language_we_do_not_have_is_still_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, language="fr")
