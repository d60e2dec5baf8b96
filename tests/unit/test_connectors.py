"""The connectors' pure parts: each vendor's signature, payload translation and the CSV
exports' mapping, with the refusals a sender or a user gets."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import httpx
import pytest
from pydantic import BaseModel, Field, ValidationError

from services.ingest.connectors import freshdesk, hubspot, signing, zendesk
from services.ingest.connectors.accounts_csv import (
    FALLBACK_ENCODING,
    PYDANTIC_TEMPLATES,
    CsvError,
    read_all,
    undecodable,
    wording_of,
)
from services.ingest.connectors.common import validated
from services.ingest.connectors.importer import import_accounts
from services.ingest.connectors.mapping import MappingError, load_mapping
from services.ingest.connectors.schemas import FRESHDESK, HUBSPOT, ZENDESK_EVENT, ZENDESK_TRIGGER
from shared.contracts.events import LifecycleStage, Tier
from shared.i18n import catalog
from shared.web import ClientError

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
SECRET = "s3cret"


def _b64mac(message: bytes) -> str:
    return base64.b64encode(hmac.new(SECRET.encode(), message, hashlib.sha256).digest()).decode()


@pytest.fixture
def mapping(tmp_path: Path):  # type: ignore[no-untyped-def]
    own = tmp_path / "connectors.toml"
    own.write_text(
        '[owners]\n"Anna Li" = "anna@example.com"\n"777" = "carl@example.com"\n'
        '[zendesk.organizations]\n"509974" = "acme"\n'
        '[freshdesk.companies]\n"Acme Trading" = "acme"\n'
    )
    return load_mapping(str(own))


def test_zendesk_signature_timestamp_and_body() -> None:
    stamp, body = "2026-12-03T09:59:00Z", b'{"ticket": {}}'
    good = {
        signing.ZENDESK_TIMESTAMP: stamp,
        signing.ZENDESK_SIGNATURE: _b64mac(stamp.encode() + body),
    }
    signing.check_zendesk(good, SECRET, body, NOW)
    with pytest.raises(ClientError) as bad:
        signing.check_zendesk(good, SECRET, body + b" ", NOW)
    assert (bad.value.status, bad.value.code) == (401, "bad_signature")
    with pytest.raises(ClientError) as stale:
        signing.check_zendesk(good, SECRET, body, NOW + timedelta(minutes=10))
    assert stale.value.code == "stale_timestamp"
    with pytest.raises(ClientError) as garbage:
        signing.check_zendesk({signing.ZENDESK_TIMESTAMP: "x" * 5000}, SECRET, body, NOW)
    assert garbage.value.code == "stale_timestamp"
    # Unix seconds past year 9999 (12 digits pass the length check): stale, not a 500.
    for beyond in ("999999999999", "253402300800"):
        with pytest.raises(ClientError) as far:
            signing.check_zendesk({signing.ZENDESK_TIMESTAMP: beyond}, SECRET, body, NOW)
        assert (far.value.status, far.value.code) == (401, "stale_timestamp")
    with pytest.raises(ClientError) as forged:  # non-ASCII: compare_digest would raise
        signing.check_zendesk({**good, signing.ZENDESK_SIGNATURE: "sig\xe9"}, SECRET, body, NOW)
    assert forged.value.code == "bad_signature"


def test_hubspot_v3_signature_over_method_url_body_and_milliseconds() -> None:
    uri, body = "https://hw.example.com/v1/connectors/hubspot/webhook", b"[]"
    stamp = str(int(NOW.timestamp() * 1000) - 60_000)
    headers = {
        signing.HUBSPOT_TIMESTAMP: stamp,
        signing.HUBSPOT_SIGNATURE: _b64mac(b"POST" + uri.encode() + body + stamp.encode()),
    }
    signing.check_hubspot(headers, SECRET, "POST", ["http://internal/x", uri], body, NOW)
    with pytest.raises(ClientError, match="X-HubSpot-Signature-v3"):
        signing.check_hubspot(headers, SECRET, "POST", ["http://internal/x"], body, NOW)
    with pytest.raises(ClientError) as stale:
        signing.check_hubspot(headers, SECRET, "POST", [uri], body, NOW + timedelta(minutes=6))
    assert stale.value.code == "stale_timestamp"


def test_freshdesk_shared_secret_as_header_or_basic_password() -> None:
    signing.check_shared_secret({signing.FRESHDESK_TOKEN: SECRET}, SECRET)
    basic = base64.b64encode(f"freshdesk:{SECRET}".encode()).decode()
    signing.check_shared_secret({"authorization": f"Basic {basic}"}, SECRET)
    for headers in ({}, {signing.FRESHDESK_TOKEN: "wrong"}, {"authorization": "Basic %%%"}):
        with pytest.raises(ClientError) as refused:
            signing.check_shared_secret(headers, SECRET)
        assert (refused.value.status, refused.value.code) == (401, "bad_token")


def _one(out):  # type: ignore[no-untyped-def]
    checked = validated(out, now=NOW, max_future_skew=timedelta(hours=1), kind=out_kind(out))
    assert checked.rejected == []
    return checked.valid[0]


def out_kind(out) -> str:  # type: ignore[no-untyped-def]
    return out.events[0][1]["kind"]


def test_zendesk_trigger_and_event_become_ticket_events(mapping) -> None:  # type: ignore[no-untyped-def]
    t = _one(zendesk.translate(ZENDESK_TRIGGER, mapping))
    assert (t.account_id, t.ticket_id, t.status, t.priority, t.type) == (
        "acme",
        "zendesk:35436",
        "open",
        "high",
        "bug",
    )
    assert t.event_id == "zendesk:35436:open:2026-12-03T08:40:00Z"  # once per update
    e = _one(zendesk.translate(ZENDESK_EVENT, mapping))
    assert (e.account_id, e.status, e.solved_at) == ("acme", "solved", e.occurred_at)
    # No reply time comes with a webhook: an answered ticket (pending, solved) was
    # answered by this update; an open one is not known to be (every connector's
    # ticket counted as unanswered past its SLA).
    assert (t.first_reply_at, e.first_reply_at) == (None, e.occurred_at)
    # On hold waits on a third party, not on the customer: not an answer.
    held = {"ticket": {**ZENDESK_TRIGGER["ticket"], "status": "Hold"}}
    h = _one(zendesk.translate(held, mapping))
    assert (h.status, h.first_reply_at) == ("pending", None)
    unmapped = {**ZENDESK_EVENT, "detail": {**ZENDESK_EVENT["detail"], "organization_id": "1"}}
    refused = zendesk.translate(unmapped, mapping).rejected[0]
    assert refused.errors[0]["field"] == "organization"
    with pytest.raises(ClientError) as unknown:
        zendesk.translate({"hello": 1}, mapping)
    assert (unknown.value.status, unknown.value.code) == (400, "unknown_payload")


def test_freshdesk_webhook_maps_company_status_and_priority(mapping) -> None:  # type: ignore[no-untyped-def]
    t = _one(freshdesk.translate(FRESHDESK, mapping, NOW))
    assert (t.account_id, t.status, t.priority, t.type) == ("acme", "open", "urgent", "bug")
    resolved = {**FRESHDESK["freshdesk_webhook"], "ticket_status": "Resolved", "account_id": "beta"}
    r = _one(freshdesk.translate(resolved, mapping, NOW))
    assert (r.account_id, r.status, r.first_reply_at) == ("beta", "solved", r.occurred_at)
    third = {**FRESHDESK["freshdesk_webhook"], "ticket_status": "Waiting on Third Party"}
    w = _one(freshdesk.translate(third, mapping, NOW))
    assert (w.status, w.first_reply_at) == ("pending", None)
    mapped = {k: v for k, v in FRESHDESK["freshdesk_webhook"].items() if k != "account_id"}
    assert _one(freshdesk.translate(mapped, mapping, NOW)).account_id == "acme"
    stranger = {**mapped, "ticket_company_name": "Nobody"}
    assert freshdesk.translate(stranger, mapping, NOW).rejected[0].errors[0]["field"] == (
        "ticket_company_name"
    )
    with pytest.raises(ClientError, match="Freshdesk"):
        freshdesk.translate([1, 2], mapping, NOW)


def test_hubspot_changes_become_facts_and_the_rest_is_left(mapping) -> None:  # type: ignore[no-untyped-def]
    base = HUBSPOT[0]
    body = [
        base,
        {**base, "propertyName": "hubspot_owner_id", "propertyValue": "777"},
        {**base, "propertyName": "lifecyclestage", "propertyValue": "lead"},  # funnel: left
        {**base, "propertyName": "favourite_colour", "propertyValue": "red"},  # unmapped
        {**base, "subscriptionType": "contact.propertyChange"},
        {**base, "propertyName": "annualrevenue", "propertyValue": "lots"},
    ]
    out = hubspot.translate(body, mapping)
    assert out.ignored == 3
    assert [r.index for r in out.rejected] == [5]
    # A time past year 9999 (15 digits of milliseconds) is refused by field, not a 500.
    late = hubspot.translate([{**base, "occurredAt": 999_999_999_999_999}], mapping)
    assert [(r.index, r.errors[0]["field"]) for r in late.rejected] == [(0, "occurredAt")]
    assert not late.events
    checked = validated(out, now=NOW, max_future_skew=timedelta(hours=1), kind="account")
    arr, owner = checked.valid
    assert (arr.account_id, arr.arr) == ("1246965", 86000.0)
    assert owner.owner is not None and owner.owner.email == "carl@example.com"
    with pytest.raises(ClientError):
        hubspot.translate({"not": "a list"}, mapping)


HUBSPOT_CSV = (
    "Record ID,Company name,Annual Revenue,Company owner,Lifecycle Stage,Contract end date,Notes\n"
    '101,Acme,"1,200,000",Anna Li,customer,2027-06-30,x\n'
    "102,Beta,abc,Nobody,customer,2027-13-01,\n"
    ",Gamma,5,,,,\n"
)


def test_hubspot_csv_rows_and_their_errors(mapping) -> None:  # type: ignore[no-untyped-def]
    header, rows = read_all(HUBSPOT_CSV.encode(), "hubspot", mapping, NOW)
    assert header.ignored == ["Notes"]
    acme = rows[0].fact
    assert acme is not None and (acme.account_id, acme.arr, acme.lifecycle_stage) == (
        "101",
        1_200_000.0,
        "stable",
    )
    assert acme.owner is not None and acme.owner.email == "anna@example.com"
    assert str(acme.contract_end) == "2027-06-30"
    problems = {(e.row, e.column) for r in rows[1:] for e in r.errors}
    assert problems == {
        (3, "Annual Revenue"),
        (3, "Company owner"),
        (3, "Contract end date"),
        (4, "Record ID"),
    }


def test_salesforce_and_own_csv(mapping) -> None:  # type: ignore[no-untyped-def]
    sf = "Account ID,Account Name,Type,Account Owner,Contract_End__c\n001A,Acme,Customer - Direct,anna@example.com,6/30/2027\n"
    (_, [row]) = read_all(sf.encode(), "salesforce", mapping, NOW)
    assert row.fact is not None and str(row.fact.contract_end) == "2027-06-30"
    ours = "account_id,tier,seats_purchased,timezone\nacme,strategic,12,Asia/Shanghai\nbeta,gold,1.5,Mars/Base\n"
    _, (good, bad) = read_all(ours.encode(), "csv", mapping, NOW)
    assert good.fact is not None and good.fact.seats_purchased == 12
    # Every error of a row, a value that cannot be read and one outside our choices alike.
    assert {e.column for e in bad.errors} == {"seats_purchased", "tier", "timezone"}
    # A contract ending before it starts is refused, naming the column.
    backwards = "account_id,contract_start,contract_end\nacme,2027-01-01,2026-01-01\n"
    _, (row,) = read_all(backwards.encode(), "csv", mapping, NOW)
    assert row.fact is None and [e.column for e in row.errors] == ["contract_end"]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty"),
        (b"name,tier\nAcme,strategic\n", "account_id"),
        ("account_id\n\u00e9".encode("latin-1"), "UTF-8"),
        # European Excel's "CSV": the header read as one column, said so (not "no id").
        (b"account_id;name;tier\nacme;Acme;strategic\n", "separated by ';', not commas"),
    ],
)
def test_a_file_that_is_no_such_csv(mapping, data: bytes, says: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CsvError, match=says):
        read_all(data, "csv", mapping, NOW)


def test_a_mapping_file_naming_unknown_facts_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[hubspot.properties]\nname = "nickname"\n')
    with pytest.raises(MappingError, match="nickname"):
        load_mapping(str(bad))


def test_numbers_a_spreadsheet_may_write_otherwise_are_refused_not_guessed(mapping) -> None:  # type: ignore[no-untyped-def]
    """ "1.234,50" was stored as 1.2345 and "1.000" seats as 1 (found from outside)."""
    ours = (
        "account_id,arr,seats_purchased\n"
        'a,"1.234,50",5\n'
        "b,1234,1.000\n"
        'c,"1,234,567.50","1,000"\n'
        "d,0.125,7\n"
        "e,1 200,12\n"
    )
    _, rows = read_all(ours.encode(), "csv", mapping, NOW)
    said = {r.row: {e.column: e.message for e in r.errors} for r in rows}
    assert "decimal comma" in said[2]["arr"]
    assert "a thousand or one" in said[3]["seats_purchased"]
    good = {r.fact.account_id: r.fact for r in rows if r.fact is not None}
    assert (good["c"].arr, good["c"].seats_purchased) == (1_234_567.5, 1000)
    assert good["d"].arr == 0.125 and good["e"].arr == 1200


def test_an_account_twice_in_one_file_keeps_its_first_row_and_says_so(
    mapping,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """Both rows went with one time: which values were kept was left to chance."""
    path = tmp_path / "crm.csv"
    path.write_text("account_id,name,seats_purchased\nd1,First,5\nd1,Second,6\nd2,Other,1\n")
    sent: list[list[dict[str, object]]] = []

    def send(facts: list[dict[str, object]]) -> httpx.Response:
        sent.append(facts)
        return httpx.Response(202)

    _, rows = read_all(path.read_bytes(), "csv", mapping, NOW)  # the dashboard's upload
    assert [r.fact is not None for r in rows] == [True, False, True]
    done = import_accounts(path, "csv", mapping, NOW, send=send)
    assert [f["name"] for batch in sent for f in batch] == ["First", "Other"]
    assert (done.imported, done.rows) == (2, 3)
    (error,) = done.errors
    assert error.row == 3 and "is on row 2 already" in error.message


def test_an_export_imported_back_reads_as_it_was_and_names_the_columns_left_aside(
    mapping,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """Our CSV exports put an apostrophe before text a spreadsheet would run: imported
    back, it made an account "'=evil" beside "=evil", and columns the format has no
    fact for were left out without a word (found from outside)."""
    path = tmp_path / "accounts.csv"
    path.write_text(
        "account_id,name,industry,updated_at\n'=evil,'=HYPERLINK(\"x\"),'-2+3,2026-12-01\n"
        "plain,O'Brien,'retail,2026-12-01\n"
    )
    sent: list[dict[str, object]] = []

    def send(facts: list[dict[str, object]]) -> httpx.Response:
        sent.extend(facts)
        return httpx.Response(202)

    done = import_accounts(path, "csv", mapping, NOW, send=send)
    assert [(f["account_id"], f["name"]) for f in sent] == [
        ("=evil", '=HYPERLINK("x")'),
        ("plain", "O'Brien"),  # an apostrophe of the data's own stays
    ]
    assert sent[0]["industry"] == "-2+3" and sent[1]["industry"] == "'retail"
    assert done.ignored == ["updated_at"]


def test_a_late_row_not_in_utf8_stops_the_import_before_anything_is_sent(
    mapping,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """500 rows were sent before "not imported: … not UTF-8 (byte 7746)", the byte
    counted from a buffer's start (found from outside)."""
    rows = "".join(f"a{i},Name {i}\n" for i in range(1200))
    # Bytes no encoding it tries reads (GB18030 has no 0xFF).
    data = f"account_id,name\n{rows}".encode() + b"g,\xff\xfe\n"
    path = tmp_path / "late.csv"
    path.write_bytes(data)

    def send(facts: list[dict[str, object]]) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    with pytest.raises(CsvError, match=rf"line 1202, byte {len(data) - 3}\): nothing was sent"):
        import_accounts(path, "csv", mapping, NOW, send=send)


def test_a_bad_byte_after_a_character_split_between_reads_is_placed_exactly(
    mapping,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """The file is checked a MiB at a time: a character begun in one read was counted
    in the next's offsets (found in review)."""
    head = b"account_id,name\n" + b"a," + b"x" * ((1 << 20) - 20) + b"\n"
    data = head + "中".encode() + b"\xff\n"  # "中" straddles the first MiB's end
    assert len(head) < 1 << 20 < len(head) + 3
    path = tmp_path / "split.csv"
    path.write_bytes(data)
    with pytest.raises(CsvError, match=rf"line 3, byte {len(head) + 3}\)"):
        import_accounts(path, "csv", mapping, NOW, send=None)


def test_excels_chinese_csv_and_a_chinese_crms_values_are_read(
    mapping,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """Excel in Chinese saves CSV in GB18030 (GBK): it was refused as "not UTF-8", and
    a row's 战略客户, 8万 and 2026年3月5日 were errors (found from outside)."""
    text = (
        "account_id,name,tier,arr,seats_purchased,contract_end,lifecycle_stage\n"
        "hz-01,杭州数智科技,战略客户,8万,２０,2026年3月5日,稳定期\n"
        "hz-02,西湖软件,企业客户,¥1.5万,5,2026/3/5,续约期\n"
        "hz-03,钱塘,普通客户,三万,5,2026-13-01,\n"
    )
    path = tmp_path / "excel-zh.csv"
    path.write_bytes(text.encode("gb18030"))
    header, rows = read_all(path.read_bytes(), "csv", mapping, NOW)  # the dashboard's
    assert header.encoding == FALLBACK_ENCODING  # its preview shows the names first
    # The command line takes it only when asked (Korean or Japanese files read too, as
    # other characters); its check shows the first names as read.
    with pytest.raises(CsvError, match=r"reads as GB18030.*--encoding gb18030"):
        import_accounts(path, "csv", mapping, NOW, send=None)
    done = import_accounts(path, "csv", mapping, NOW, send=None, encoding="gb18030")
    assert done.encoding == FALLBACK_ENCODING and done.imported == 2
    assert done.sample == [("hz-01", "杭州数智科技"), ("hz-02", "西湖软件")]
    first, second, third = rows
    assert first.fact is not None and second.fact is not None
    assert first.fact.name == "杭州数智科技" and first.fact.tier == "strategic"
    assert (first.fact.arr, first.fact.seats_purchased) == (80_000, 20)
    assert first.fact.contract_end == date(2026, 3, 5) == second.fact.contract_end
    assert first.fact.lifecycle_stage == "stable" and second.fact.lifecycle_stage == "renewal"
    assert (second.fact.tier, second.fact.arr) == ("enterprise", 15_000)
    said = {e.column: e for e in third.errors}
    assert set(said) == {"tier", "arr", "contract_end"}
    # Ours are worded in the page's language; pydantic's stay as they are.
    assert said["arr"].worded("zh-CN") == "'三万' 不是数字"
    assert said["contract_end"].worded("zh-CN") == "'2026-13-01' 不是日期：请写作 YYYY-MM-DD"
    assert said["arr"].worded("en") == said["arr"].message == "'三万' is not a number"


def test_the_default_mappings_chinese_names_are_the_dashboards(mapping) -> None:  # type: ignore[no-untyped-def]
    """A Chinese CRM column says a tier or stage as the dashboard shows it; the mapping
    file lists those names (read from it, not from the page's catalog, whose wording may
    change), and they must stay the page's."""
    chinese = catalog("zh-CN")
    for target, values in (("tier", list(Tier)), ("lifecycle_stage", list(LifecycleStage))):
        for value in values:
            assert mapping.values[target][chinese[value.value]] == value.value, value
    # Names and ids stay as sent: full-width forms are read as ASCII in numbers only.
    (_, [row]) = read_all(
        "account_id,name,arr\nＡＣＭＥ－０１,北京（中国）,１.１５万\n".encode(), "csv", mapping, NOW
    )
    assert row.fact is not None and row.fact.account_id == "ＡＣＭＥ－０１"
    assert row.fact.name == "北京（中国）" and row.fact.arr == 11_500
    (_, [seats]) = read_all("account_id,seats_purchased\na,1.15万\n".encode(), "csv", mapping, NOW)
    assert seats.fact is not None and seats.fact.seats_purchased == 11_500  # not 11499.99…


def test_big5_is_not_taken_for_gb18030(mapping) -> None:  # type: ignore[no-untyped-def]
    """Big5 reads as GB18030 into the private use area: no Chinese text has those."""
    data = "account_id,name\nt1,台灣積體電路\n".encode("big5")
    assert undecodable([data], FALLBACK_ENCODING) is not None
    with pytest.raises(CsvError, match="neither UTF-8 nor GB18030"):
        read_all(data, "csv", mapping, NOW)


def test_hostile_amounts_and_days_are_each_rows_error(mapping) -> None:  # type: ignore[no-untyped-def]
    """The myriads, money signs and year-first days are new ways in: a value no number
    or day reads is that row's error, never a raise or a stored infinity."""
    values = ("1e400万", "nan万", "万", "-万", "亿亿", "1e308亿", "９" * 30 + "万", "¥", "元")
    text = "account_id,arr,seats_purchased,contract_end\n" + "".join(
        f"a{i},{v},{v},{d}\n"
        for i, (v, d) in enumerate(
            zip(values, ["9999年99月99日", "0000年1月1日", "2026年\x00月1日"] * 3, strict=True)
        )
    )
    _, rows = read_all(text.encode(), "csv", mapping, NOW)
    assert len(rows) == len(values)
    for row in rows:
        assert row.fact is None, row
        assert {e.column for e in row.errors} >= {"arr", "seats_purchased", "contract_end"}


def test_a_rows_refusals_by_pydantic_read_in_chinese(mapping) -> None:  # type: ignore[no-untyped-def]
    """A Chinese team's tier the file does not map gets the choices by the dashboard's
    names, not a list of English codes; English keeps pydantic's words."""
    data = "account_id,tier,seats_purchased\nbeta,黄金客户,-3\n"
    _, [row] = read_all(data.encode(), "csv", mapping, NOW)
    by_column = {e.column: e for e in row.errors}
    tier, seats = by_column["tier"], by_column["seats_purchased"]
    assert (
        tier.worded("en")
        == tier.message
        == "Input should be 'strategic', 'enterprise' or 'non-focus'"
    )
    assert tier.worded("zh-CN") == (
        "应为以下之一：战略客户（strategic）、企业客户（enterprise）或非重点客户（non-focus）"
    )
    assert seats.worded("zh-CN") == "应大于或等于 0"


class _Every(BaseModel):
    """A field per pydantic error the import words, to keep the templates pydantic's."""

    need: int
    gt: Annotated[int, Field(gt=1)] = 2
    ge: Annotated[int, Field(ge=1)] = 2
    lt: Annotated[int, Field(lt=1)] = 0
    le: Annotated[int, Field(le=1)] = 0
    text: str = ""
    tier: Tier = Tier.strategic
    stage: Literal["a", "b"] = "a"
    number: float = 0.0
    whole: int = 0
    fraction: int = 0
    flag: bool = False
    finite: Annotated[float, Field(allow_inf_nan=False)] = 0.0


def test_the_worded_pydantic_templates_are_pydantics_own() -> None:
    """A pydantic upgrade that rewords a refusal would leave it English: caught here."""
    bad = {
        "gt": 1, "ge": 0, "lt": 1, "le": 2, "text": 5, "tier": "gold", "stage": "c",
        "number": "x", "whole": "y", "fraction": 1.5, "flag": "maybe", "finite": "inf",
    }  # fmt: skip
    with pytest.raises(ValidationError) as caught:
        _Every.model_validate(bad)
    errors = caught.value.errors(include_url=False)
    assert {e["type"] for e in errors} == set(PYDANTIC_TEMPLATES)
    for e in errors:
        template, _ = wording_of(e)
        assert template == PYDANTIC_TEMPLATES[e["type"]], e
