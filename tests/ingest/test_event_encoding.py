"""The run's fast event encoding (`snapshot.account_record`) writes exactly what encoding the pydantic
event (`encode(account_event(...))`) writes, and the outbox's header JSON reads back as before."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from arrears_cli.demo_sheet import generate_pme_rows
from arrears_ingest.snapshot import service as snapshots
from arrears_ingest.validation import ValidationConfig, validate_sheet
from arrears_shared.cloudevents import encode
from arrears_shared.stream.outbox import _headers_json
from hypothesis import given, settings
from hypothesis import strategies as st

from .sheetdata import HEADER, account_row

AS_OF = datetime(2025, 3, 31, 12, 0, 0, 123456, tzinfo=UTC)
NOW = datetime(2025, 3, 31, 12, 0, 1, tzinfo=UTC)


def both(row, change="created", as_of=AS_OF, source="sheet"):  # type: ignore[no-untyped-def]
    slow = encode(
        snapshots.account_event(row, change, as_of, source),
        source="ingest",
        id=f"r:{row.account_id}",
        time=NOW,
    )
    fast = snapshots.account_record(
        row, change, as_of, source, ce_source="ingest", id=f"r:{row.account_id}", time=NOW
    )
    return slow, fast


@pytest.mark.parametrize("change", ["created", "updated"])
def test_demo_sheet_events_are_byte_identical(change: str) -> None:
    result = validate_sheet(generate_pme_rows(2000, today=date(2025, 3, 31)), ValidationConfig())
    assert len(result.accepted) > 1900
    for row in result.accepted:
        slow, fast = both(row, change)
        assert fast == slow


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40), st.text(max_size=40), st.sampled_from(["sheet", "upload"]))
def test_any_text_encodes_identically(name: str, notes: str, source: str) -> None:
    values = [HEADER, account_row(7, **{"Customer Name": name, "Notes": notes})]
    result = validate_sheet(values, ValidationConfig())
    for row in result.accepted:
        slow, fast = both(row, "updated", datetime(2025, 1, 1, tzinfo=UTC), source)
        assert fast == slow


def test_outbox_headers_json_reads_back_as_json_dumps() -> None:
    headers = [("ce_id", 'run:PME-"\\é😀'.encode()), ("ce_type", b"arrears.account.changed.v1")]
    assert json.loads(_headers_json(headers)) == [[k, v.decode()] for k, v in headers]
