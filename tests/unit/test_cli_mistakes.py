"""The commands as a user runs them wrong or unusually (found from outside): one line
saying what to fix, never a traceback; no file silently left out; counts that add up."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from services.admin_keys import KeyCreate
from services.scoring.backfill import check_file_names
from services.scoring.backtest.replay import ChurnFileError, read_churn_csv
from services.simulate_history import write_history
from shared.auth import ApiKey, Scope

NOW = datetime.now(UTC)


def _cli(*args: str, env: dict[str, str] | None = None) -> Any:
    from services.cli import app  # the whole CLI: imported only by the tests that run it

    return CliRunner().invoke(app, list(args), env=env)


def _usage(account: str, n: int, days_ago: float) -> dict[str, Any]:
    return {
        "kind": "usage",
        "event_id": f"{account}-{n}",
        "account_id": account,
        "user_id": "u1",
        "event": "login",
        "occurred_at": (NOW - timedelta(days=days_ago)).isoformat(),
    }


def _ndjson(path: Path, events: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"HEALTHWATCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'hw.db'}"}


def test_two_files_of_one_name_are_refused_not_one_left_out(
    tmp_path: Path, env: dict[str, str]
) -> None:
    first = _ndjson(tmp_path / "a" / "ev.ndjson", [_usage("acme", n, 3) for n in range(3)])
    second = _ndjson(tmp_path / "b" / "ev.ndjson", [_usage("beta", n, 3) for n in range(3)])
    result = _cli("import", str(first), str(second), env=env)
    assert result.exit_code == 2, result.output
    assert "two files named ev.ndjson" in result.output and "rename one" in result.output
    check_file_names([first, first])  # the same file twice is one file
    folder = _cli("import", str(tmp_path / "a"), env=env)
    assert folder.exit_code == 2 and "a folder, not a file" in folder.output


def test_counts_add_up_and_rejections_left_are_named(tmp_path: Path, env: dict[str, str]) -> None:
    """Overlapping files: the repeated ids are counted once and said to be; a second
    run without --restart says the rejected lines are still to fix (it called them
    "already imported")."""
    events = [_usage("acme", n, 3 - n / 10) for n in range(10)]
    one = _ndjson(tmp_path / "one.ndjson", events[:7])
    two = _ndjson(tmp_path / "two.ndjson", events[4:])
    result = _cli("import", str(one), str(two), env=env)
    assert result.exit_code == 0, result.output
    assert "imported 10 events" in result.output
    assert "3 repeated event ids counted once" in result.output
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(orjson.dumps(_usage("acme", 99, 1)) + b"\nnot json\n")
    assert _cli("import", str(bad), env=env).exit_code == 1
    again = _cli("import", str(bad), env=env)
    assert again.exit_code == 1
    assert "1 line(s) rejected by an earlier run are still to fix" in again.output


def test_csv_rows_without_their_trailing_cells_and_upper_case_names(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Cells a row leaves out were sent as JSON nulls (the row refused for "extra
    inputs"), and "EV.CSV" was read as NDJSON (every row refused)."""
    at = (NOW - timedelta(days=2)).isoformat()
    path = tmp_path / "EV.CSV"
    path.write_text(
        "kind,event_id,account_id,user_id,event,occurred_at,module,feature\n"
        f"usage,e1,acme,u1,login,{at}\n"
        f"usage,e2,acme,u2,login,{at},reports\n",
        encoding="utf-8",
    )
    result = _cli("import", str(path), env=env)
    assert result.exit_code == 0, result.output
    assert "imported 2 events" in result.output


def test_a_simulated_history_imports_as_it_is(tmp_path: Path, env: dict[str, str]) -> None:
    """It ended today, with events later than now: the README's simulate-then-import
    refused its last day's lines."""
    events = tmp_path / "h.ndjson.gz"
    made = _cli(
        "simulate", "--history-out", str(events), "--churn-out", str(tmp_path / "c.csv"),
        "--accounts", "2", "--months", "2", "--shape", "subscription",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    with gzip.open(events) as lines:
        newest = max(orjson.loads(line)["occurred_at"] for line in lines)
    assert datetime.fromisoformat(newest) < NOW
    for wrong in (["--months", "1"], ["--accounts", "0"]):
        refused = _cli("simulate", "--history-out", str(events), *wrong)
        assert refused.exit_code == 2 and "Traceback" not in refused.output


def _history(tmp_path: Path) -> tuple[Path, Path]:
    events, churn = tmp_path / "h.ndjson.gz", tmp_path / "churn.csv"
    write_history(
        events, churn, accounts=30, days=120, end=date.today() - timedelta(days=1), seed=3,
        shape="subscription",
    )  # fmt: skip
    return events, churn


def test_backtest_and_calibrate_mistakes_end_in_one_line(tmp_path: Path) -> None:
    events, churn = _history(tmp_path)
    out = ["--out", str(tmp_path / "bt")]
    rows = churn.read_text(encoding="utf-8").splitlines()
    cases = {
        "slashed.csv": (rows[0] + "\n" + rows[1].split(",")[0] + ",01/12/2026\n", "not a day"),
        "named.csv": ("id,date\nx,2026-01-01\n", "must name the columns account_id,churn_date"),
    }
    for name, (text, says) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        for command in ("backtest", "calibrate"):
            result = _cli(command, str(events), "--churn", str(tmp_path / name), *out)
            assert result.exit_code == 2, (command, name, result.output)
            assert says in result.output and "Traceback" not in result.output
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(churn.read_text(encoding="utf-8").encode("utf-16"))
    result = _cli("backtest", str(events), "--churn", str(utf16), *out)
    assert result.exit_code == 2 and "save it as CSV UTF-8" in result.output
    for wrong in (["--step-days", "0"], ["--horizons", "-30"]):
        result = _cli("backtest", str(events), "--churn", str(churn), *wrong, *out)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    empty = tmp_path / "empty.ndjson"
    empty.write_text("", encoding="utf-8")
    for command in ("backtest", "calibrate"):
        result = _cli(command, str(empty), "--churn", str(churn), *out)
        assert result.exit_code == 2 and "no events in the history" in result.output
    cut = tmp_path / "cut.ndjson.gz"
    cut.write_bytes(events.read_bytes()[:2000])
    result = _cli("calibrate", str(cut), "--churn", str(churn), "--out", str(tmp_path / "m.toml"))
    assert result.exit_code == 1 and "stopped:" in result.output, result.output


def test_a_churn_file_a_spreadsheet_wrote_is_read(tmp_path: Path) -> None:
    """With the byte-order mark Excel writes, the file was ignored: "no churn outcomes"."""
    events, churn = _history(tmp_path)
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + churn.read_bytes())
    assert read_churn_csv(bom) == read_churn_csv(churn) != {}
    # Spaces around its cells, as a spreadsheet leaves them: read, not the whole file
    # refused (found from outside).
    spaced = tmp_path / "spaced.csv"
    rows = churn.read_text().splitlines()
    spaced.write_text("\n".join([rows[0], *(r.replace(",", " , ") + " " for r in rows[1:])]))
    assert read_churn_csv(spaced) == read_churn_csv(churn)
    result = _cli("backtest", str(events), "--churn", str(bom), "--out", str(tmp_path / "bt"))
    assert result.exit_code == 0, result.output


def test_an_account_with_two_churn_days_stops_the_backtest_naming_both_lines(
    tmp_path: Path,
) -> None:
    """The last day had won without a word and moved the AUC (found from outside); the
    same day twice is one churn."""
    churn = tmp_path / "churn.csv"
    churn.write_text("account_id,churn_date\na,2026-11-20\nb,2026-10-01\na,2026-11-20\n")
    assert read_churn_csv(churn) == {"a": date(2026, 11, 20), "b": date(2026, 10, 1)}
    churn.write_text(churn.read_text() + "a,2030-01-01\n")
    with pytest.raises(
        ChurnFileError, match=r"churn.csv:5: 'a' churned on 2026-11-20 already \(line 2\)"
    ):
        read_churn_csv(churn)


def test_calibrate_help_names_the_behaviour_table() -> None:
    """Rich took "[behaviour]" for markup and printed "declared  ratios" (found from
    outside)."""
    result = _cli("calibrate", "--help", env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "declared [behaviour] ratios" in result.output


def test_keys_for_no_email_are_refused(env: dict[str, str]) -> None:
    result = _cli("keys", "create", "--role", "csm", "--csm-email", "not-an-email", env=env)
    assert result.exit_code == 2 and "is not an email" in result.output


def test_raw_scopes_that_act_unseen_or_tie_an_admin_to_a_csm_are_refused(
    env: dict[str, str],
) -> None:
    """A respond key without read acted as a lead's on every account, and an admin key
    took a CSM's email (found from outside): both are refused, by the command and by
    ``POST /v1/keys`` alike; an old respond-only key is refused what it would act on."""
    result = _cli("keys", "create", "--scope", "respond", env=env)
    assert result.exit_code == 2 and "needs read too" in result.output
    result = _cli("keys", "create", "--scope", "admin", "--csm-email", "a@example.com", env=env)
    assert result.exit_code == 2 and "sees every account" in result.output
    both = KeyCreate(name="x", scopes=[Scope.read, Scope.respond])
    assert both.granted() == {Scope.read, Scope.respond}
    with pytest.raises(ValidationError, match="needs read too"):
        KeyCreate(name="x", scopes=[Scope.respond])
    with pytest.raises(ValidationError, match="sees every account"):
        KeyCreate(name="x", scopes=[Scope.admin], csm_email="a@example.com")
    old = ApiKey("k", "old", frozenset({Scope.respond}))
    assert not old.allows(Scope.respond) and not old.allows(Scope.read)
    assert ApiKey("k", "csm", frozenset({Scope.read, Scope.respond}), "a@x.cn").allows(
        Scope.respond
    )


def test_backtest_names_the_lines_it_rejects(tmp_path: Path) -> None:
    """It counted them only; now it lists the first with file, line and reason (a CSV
    row's line counts its header), as an import does."""
    events, churn = _history(tmp_path)
    odd = tmp_path / "odd.ndjson"
    odd.write_bytes(b'\n{"kind": "usage", "event_id": "no-account"}\n')
    more = tmp_path / "more.csv"
    more.write_text(
        "kind,event_id,account_id,user_id,event,occurred_at\nusage,x1,a,u1,login,not a time\n",
        encoding="utf-8",
    )
    out = ["--out", str(tmp_path / "bt")]
    result = _cli("backtest", str(events), str(odd), str(more), "--churn", str(churn), *out)
    assert result.exit_code == 0, result.output
    assert "2 line(s) rejected" in result.output
    assert "odd.ndjson:2: " in result.output and "account_id" in result.output
    assert "more.csv:2: " in result.output and "occurred_at" in result.output


def test_days_and_horizons_written_wrong_name_their_option(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Python's own messages ("invalid literal for int()", "Invalid isoformat string")
    named neither the option nor the form to use; a report or export ending in days to
    come was made, reading them as days without use."""
    events, churn = _history(tmp_path)
    out = ["--out", str(tmp_path / "bt")]
    result = _cli("backtest", str(events), "--churn", str(churn), "--horizons", "30,abc", *out)
    assert result.exit_code == 2 and "--horizons '30,abc'" in result.output, result.output
    assert "30,60,90" in result.output
    history = ["export", "history", "--out", str(tmp_path / "h.csv")]
    result = _cli(*history, "--from", "2026/11/01", env=env)
    assert (
        result.exit_code == 2 and "--from '2026/11/01': give a day as YYYY-MM-DD" in result.output
    )
    ahead = (date.today() + timedelta(days=3)).isoformat()
    result = _cli(*history, "--to", ahead, env=env)
    assert result.exit_code == 2 and f"--to {ahead}: a day to come" in result.output
    result = _cli("report", "acme", "--end", ahead, env=env)
    assert result.exit_code == 2 and f"--end {ahead}: a day to come" in result.output
    # Days of a kind that has none were ignored without a word.
    result = _cli("export", "scores", "--out", str(tmp_path / "s.csv"), "--from", "2026-11-01")
    assert result.exit_code == 2 and "scores has none" in result.output
    # The default range, a part of the history, is said: it read as all of it.
    assert _cli("migrate", env=env).exit_code == 0
    result = _cli(*history, env=env)
    assert result.exit_code == 0, result.output
    first = (date.today() - timedelta(days=89)).isoformat()
    assert f"daily history {first} to" in result.output and "--from for earlier" in result.output
    # "-" is standard output, as Unix tools read it (a file named "-" was written).
    result = _cli("export", "accounts", "--out", "-", env=env)
    assert result.exit_code == 0 and result.stdout.startswith("account_id,"), result.output
    assert not Path("-").exists()


def test_an_import_stopped_with_ctrl_c_says_it_goes_on_when_run_again(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It exited 130 without a word on whether anything was kept (found from outside)."""
    import services.cli.history

    async def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(services.cli.history, "import_files", interrupted)
    events = _ndjson(tmp_path / "ev.ndjson", [_usage("acme", n, 3) for n in range(3)])
    result = _cli("import", str(events), env=env)
    assert result.exit_code == 130 and "run the same command again" in result.output

    # Stopped by SIGTERM (a job's time limit, ``kill``): the same words, not a bare
    # "Terminated" (found from outside).
    async def terminated(*args: Any, **kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(5)

    monkeypatch.setattr(services.cli.history, "import_files", terminated)
    before = signal.getsignal(signal.SIGTERM)
    result = _cli("import", str(events), env=env)
    assert result.exit_code == 130 and "run the same command again" in result.output
    assert signal.getsignal(signal.SIGTERM) == before  # as it was


def test_accounts_import_reads_excels_chinese_csv_when_asked(tmp_path: Path) -> None:
    """Excel in Chinese saves GB18030: the command says so and how to read it, and its
    check shows the first names as read before anything is sent."""
    export = tmp_path / "excel.csv"
    export.write_bytes("account_id,name,tier\nhz-1,杭州数智,战略客户\n".encode("gb18030"))
    refused = _cli("accounts", "import", str(export), "--check")
    assert refused.exit_code == 1 and "--encoding gb18030" in refused.output
    checked = _cli("accounts", "import", str(export), "--check", "--encoding", "gb18030")
    assert checked.exit_code == 0, checked.output
    assert "would import 1 of 1 rows" in checked.output and "hz-1: 杭州数智" in checked.output


def test_the_commands_speak_the_language_set_else_the_terminals(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """HEALTHWATCH_LANGUAGE first (as the services read it), else the locale, as gettext
    reads it; log lines stay English. The commands spoke English only."""
    folder = str(tmp_path)
    chinese = _cli("import", folder, env=env | {"HEALTHWATCH_LANGUAGE": "zh-CN"})
    assert chinese.exit_code == 2 and "这是文件夹，不是文件" in chinese.output
    by_locale = {"HEALTHWATCH_LANGUAGE": None, "LC_ALL": None, "LANG": "zh_CN.UTF-8"}
    assert "这是文件夹，不是文件" in _cli("import", folder, env=env | by_locale).output
    chosen = env | by_locale | {"HEALTHWATCH_LANGUAGE": "en"}
    assert "a folder, not a file" in _cli("import", folder, env=chosen).output
    english = env | {"HEALTHWATCH_LANGUAGE": None, "LC_ALL": None, "LANG": "C.UTF-8"}
    assert "a folder, not a file" in _cli("import", folder, env=english).output
    # A value with fields and markup: the import of a good file, counted in Chinese.
    good = _ndjson(tmp_path / "ev.ndjson", [_usage("acme", n, 3) for n in range(3)])
    done = _cli("import", str(good), env=env | {"HEALTHWATCH_LANGUAGE": "zh-CN"})
    assert done.exit_code == 0, done.output
    assert "已导入 1 个文件中的 3 个事件" in done.output
