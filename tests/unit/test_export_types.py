"""The Parquet export's accounts: days typed as days (they were text, though the README
says the file's columns are typed; found from outside)."""

from __future__ import annotations

import io
from datetime import date
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq

from services.scoring import export


def test_a_facts_days_are_days_in_the_parquet_export() -> None:
    stored = {
        "account_id": "acme",
        "name": "Acme",
        "tier": "strategic",
        "owner_email": None,
        "seats_purchased": 10,
        "updated_at": None,
        "facts": {"fields": {"contract_start": "2026-01-01", "go_live": "2026-02-15", "arr": 5}},
    }
    record = export._record("accounts", SimpleNamespace(_mapping=stored))
    assert (record["contract_start"], record["go_live"]) == (date(2026, 1, 1), date(2026, 2, 15))
    assert record["contract_end"] is None
    schema = export.SCHEMAS["accounts"]
    assert schema.field("contract_end").type == pa.date32()
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([record], schema=schema), sink)
    (row,) = pq.read_table(io.BytesIO(sink.getvalue())).to_pylist()
    assert row["contract_start"] == date(2026, 1, 1) and row["arr"] == 5.0


async def test_the_history_csv_writes_its_flags_as_json_does() -> None:
    """``recorded`` was written True/False, Python's spelling (found from outside)."""

    async def parts():  # type: ignore[no-untyped-def]
        yield [{"account_id": "a", "recorded": True}, {"account_id": "b", "recorded": False}]

    schema = pa.schema([("account_id", pa.string()), ("recorded", pa.bool_())])
    text = b"".join([chunk async for chunk in export._csv(parts(), schema, "")]).decode()
    assert text == "account_id,recorded\na,true\nb,false\n"
