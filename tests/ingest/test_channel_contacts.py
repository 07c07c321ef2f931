"""`AccountChanged.contacts` from the channel registry: sms and email from the fixed columns, WhatsApp (any
registered channel other than those two) from its own address / opt-in columns, or the row's Phone without
consent when the sheet has none. Rows of a sheet without channel columns hash exactly as before."""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from arrears_ingest.runs.service import SheetIngestor
from arrears_ingest.snapshot import service as snapshots
from arrears_ingest.validation import AccountRow, ValidationConfig, validate_sheet
from arrears_ingest.validation.columns import check_writeback_headers, map_header
from arrears_ingest.validation.pool import ValidationPool, validate_rows
from arrears_ingest.validation.rows import content_hash
from arrears_shared.cloudevents import encode
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.events import AccountChanged, ContactPoint
from arrears_shared.stream.transaction import transaction
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .sheetdata import HEADER, account_row
from .test_runs_db import FakeSheet, outbox_since

US = ValidationConfig()
AS_OF = datetime(2025, 3, 31, 12, 0, tzinfo=UTC)
WA_HEADER = [*HEADER, "WhatsApp Number", "WhatsApp opt-in"]

# Computed before `contacts` existed: an upgrade must not make every account look changed (content hash)
# nor re-validate every row (raw hash).
ACC1_CONTENT = "06dc7a771ca4851cfe3c5dd86e1a431f1b85c09fbff2e5b8d497d4f2af24b9aa"
ACC1_RAW = "511dfa78805c26cc6d9f07c3028577809b2413f8dd19e283a120f13c026e5a28"
ACC3_NO_PHONE_CONTENT = "e81e2bfb42287ba86403f300380b96e653e8b978fc8904046535f1453741eddd"
ACC3_NO_PHONE_RAW = "a27bfd24a04877f5a8cfcf9f54e4f4733a9dbc19e4b5d0c8fdc5bc208519fb5a"


def wa_row(i: int, number: str = "", opt_in: str = "", **overrides: str) -> list[str]:
    return [*account_row(i, **overrides), number, opt_in]


def accepted(values: list[list[str]]) -> list[AccountRow]:
    result = validate_sheet(values, US)
    assert not result.rejections
    return result.accepted


def contacts(row: AccountRow) -> dict[str, ContactPoint]:
    return snapshots.account_event(row, "created", AS_OF).contacts


def cp(address: str | None, consent: bool) -> ContactPoint:
    return ContactPoint(address=address, consent=consent)


# -- content hash --------------------------------------------------------------------------------------------


def test_rows_without_extra_channels_hash_as_before() -> None:
    a, b = accepted([HEADER, account_row(1), account_row(3, Phone="", Email="bad")])
    assert (a.content_hash, a.raw_hash) == (ACC1_CONTENT, ACC1_RAW)
    assert (b.content_hash, b.raw_hash) == (ACC3_NO_PHONE_CONTENT, ACC3_NO_PHONE_RAW)
    assert a.extra_contacts == () and "contacts" not in a.to_data()


def test_empty_channel_columns_keep_the_content_hash() -> None:
    """Adding WhatsApp columns to the sheet announces nothing until a row says something in them."""
    (row,) = accepted([WA_HEADER, wa_row(1)])
    assert row.extra_contacts == () and row.content_hash == ACC1_CONTENT
    assert row.raw_hash != ACC1_RAW  # the row's cells are read again once, silently


def test_whatsapp_number_or_opt_in_changes_the_hash() -> None:
    def chash(number: str, opt_in: str) -> str:
        return accepted([WA_HEADER, wa_row(1, number, opt_in)])[0].content_hash

    base = chash("+1 415 555 0199", "N")
    assert base != ACC1_CONTENT  # a number of its own: not the Phone's
    assert chash("+1 415 555 0142", "N") != base
    assert chash("+1 415 555 0199", "Y") != base
    assert chash("+1 415 555 0199", "2025-02-01") == chash("+1 415 555 0199", "Y")  # same content
    assert chash("(415) 555-0199", "no") == base  # same number, written otherwise


def test_the_content_hash_is_the_json_hash_with_contacts() -> None:
    """The payment path re-hashes the snapshot's data: it must get the row's own hash."""
    (row,) = accepted([WA_HEADER, wa_row(1, "07911 123456", "yes", Country="GB", State="")])
    data = json.loads(json.dumps(row.to_data()))
    assert data["contacts"] == {"whatsapp": {"address": "+447911123456", "consent": True}}
    assert content_hash(row.account_id, data) == row.content_hash
    (plain,) = accepted([HEADER, account_row(1)])
    assert content_hash(plain.account_id, json.loads(json.dumps(plain.to_data()))) == ACC1_CONTENT


# -- what the event carries ----------------------------------------------------------------------------------


def test_whatsapp_columns_fill_contacts() -> None:
    (row,) = accepted([WA_HEADER, wa_row(1, "+44 7911 123456", "2025-01-03")])
    event = snapshots.account_event(row, "created", AS_OF)
    assert event.contacts == {
        "sms": cp("+12125550001", True),
        "email": cp("customer1@example.com", True),
        "whatsapp": cp("+447911123456", True),
    }
    # the flat fields are as they always were, and repeat the sms / email entries
    assert (event.phone, event.sms_consent, event.email, event.email_consent) == (
        "+12125550001",
        True,
        "customer1@example.com",
        True,
    )


@pytest.mark.parametrize(
    ("cell", "consent"),
    [("Y", True), ("yes", True), ("N", False), ("", False), ("03/02/2025", True), ("45720", True)],
)
def test_opt_in_is_a_flag_or_a_date(cell: str, consent: bool) -> None:
    (row,) = accepted([WA_HEADER, wa_row(1, "+1 415 555 0199", cell)])
    assert contacts(row)["whatsapp"] == cp("+14155550199", consent) and row.warnings == ()


def test_unreadable_opt_in_is_no_consent_with_a_warning() -> None:
    (row,) = accepted([WA_HEADER, wa_row(1, "+1 415 555 0199", "maybe")])
    assert contacts(row)["whatsapp"] == cp("+14155550199", False)
    assert [(w.column, w.reason) for w in row.warnings] == [
        ("WhatsApp opt-in", "expected yes/no or the opt-in date; read as no consent")
    ]


@pytest.mark.parametrize(
    "values",
    [
        [[*HEADER, "WhatsApp Opt In"], [*account_row(1), "yes"]],  # no number column
        [WA_HEADER, wa_row(1, "", "yes")],  # an empty number cell
    ],
    ids=["no-number-column", "empty-number-cell"],
)
def test_opt_in_without_a_number_uses_the_phone(values: list[list[str]]) -> None:
    (row,) = accepted(values)
    assert contacts(row)["whatsapp"] == cp("+12125550001", True)
    assert contacts(row)["sms"] == cp("+12125550001", True)


def test_opt_in_without_any_number_does_not_count() -> None:
    (row,) = accepted([WA_HEADER, wa_row(1, "", "yes", Phone="")])
    assert contacts(row)["whatsapp"] == cp(None, False)


def test_bad_whatsapp_number_disables_whatsapp_only() -> None:
    (row,) = accepted([WA_HEADER, wa_row(1, "call me", "yes")])
    assert contacts(row) == {
        "sms": cp("+12125550001", True),
        "email": cp("customer1@example.com", True),
        "whatsapp": cp(None, False),
    }
    (warning,) = row.warnings
    assert warning.column == "WhatsApp Number" and warning.reason.endswith("; WhatsApp disabled")


def test_sheet_without_whatsapp_columns_implies_the_phone_without_consent() -> None:
    with_phone, without = accepted([HEADER, account_row(1), account_row(2, Phone="")])
    assert contacts(with_phone) == {
        "sms": cp("+12125550001", True),
        "email": cp("customer1@example.com", True),
        "whatsapp": cp("+12125550001", False),
    }
    assert contacts(without)["whatsapp"] == cp(None, False)
    assert contacts(without)["sms"] == cp(None, False)


def test_headers_are_matched_like_the_fixed_columns_and_the_first_one_wins() -> None:
    header = [*HEADER, "WHATSAPP_PHONE", "whatsapp", "Whatsapp Consent", "Loyalty Tier"]
    values = [header, [*account_row(1), "+1 415 555 0111", "+1 415 555 0122", "TRUE", "gold"]]
    result = validate_sheet(values, US)
    assert result.unknown_columns == ("Loyalty Tier",)
    assert contacts(result.accepted[0])["whatsapp"] == cp("+14155550111", True)
    assert map_header(header).channels[0].address_header == "WHATSAPP_PHONE"


def test_events_are_byte_identical_with_contacts() -> None:
    rows = accepted([WA_HEADER, wa_row(1, "+44 7911 123456", "Y"), wa_row(2, "bad", "Y"), wa_row(3)])
    for row in rows:
        slow = encode(snapshots.account_event(row, "updated", AS_OF), source="ingest", id="r", time=AS_OF)
        fast = snapshots.account_record(
            row, "updated", AS_OF, "sheet", ce_source="ingest", id="r", time=AS_OF
        )
        assert fast == slow


def test_removed_event_keeps_the_addresses_and_clears_every_consent() -> None:
    (row,) = accepted([WA_HEADER, wa_row(1, "+1 415 555 0199", "Y")])
    data = json.loads(json.dumps(row.to_data()))
    event = snapshots.removed_event(row.account_id, 2, row.content_hash, data, AS_OF)
    assert event.contacts == {
        "sms": cp("+12125550001", False),
        "email": cp("customer1@example.com", False),
        "whatsapp": cp("+14155550199", False),
    }
    payment = snapshots.data_event(row.account_id, "payment", "payment", 2, "h", data, AS_OF)
    assert payment.contacts["whatsapp"] == cp("+14155550199", True)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.text(max_size=30), st.sampled_from(["", "+44 7911 123456", "(212) 555-0100", "12", "@"])),
    st.one_of(st.text(max_size=20), st.sampled_from(["", "Y", "N", "2025-01-02", "45720", "13/13/2025"])),
    st.sampled_from(["", "(415) 555-0100"]),
)
def test_no_channel_cell_crashes_and_the_hash_is_the_json_hash(number: str, opt_in: str, phone: str) -> None:
    (row,) = accepted([WA_HEADER, wa_row(1, number, opt_in, Phone=phone)])
    wa = contacts(row)["whatsapp"]
    assert wa.address is not None or not wa.consent
    text = json.dumps([row.account_id, row.hashed_fields()], sort_keys=True, separators=(",", ":"))
    assert row.content_hash == hashlib.sha256(text.encode()).hexdigest()


def test_writeback_columns_must_not_be_channel_columns() -> None:
    with pytest.raises(ValueError, match="channel"):
        check_writeback_headers(["Last Contact", "WhatsApp Number"])


def test_channel_columns_cross_to_workers() -> None:
    """A worker process receives (cfg, rows, channel columns) and returns rows, all pickled."""
    header = map_header(WA_HEADER)
    items = [(wa_row(1, "+1 415 555 0199", "Y"), 2, "rh"), (wa_row(2, "x", "Y"), 3, "rh")]
    args = pickle.loads(pickle.dumps((US, items, header.channels)))
    assert args[2] == header.channels
    rows = pickle.loads(pickle.dumps(validate_rows(*args)))
    assert rows == validate_rows(US, items, header.channels)
    assert [r.extra_contacts for r in rows] == [
        (("whatsapp", "+14155550199", True),),
        (("whatsapp", None, False),),
    ]


# -- a run: events, change detection -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ingest_url(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("ingest_channels")
    upgrade(url, "ingest")
    return url


@pytest.fixture
async def engine(ingest_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(ingest_url, pool_size=4)
    yield eng
    await eng.dispose()


def whatsapp_events(envs: list) -> dict[str, tuple[str, ContactPoint]]:  # type: ignore[type-arg]
    out = {}
    for e in envs:
        assert isinstance(e.data, AccountChanged)
        out[e.data.account_id] = (e.data.change, e.data.contacts["whatsapp"])
    return out


async def test_run_announces_whatsapp_changes(engine: AsyncEngine) -> None:
    """Created with contacts, an unchanged re-run silent, a new number or opt-in `updated`, a removal with
    consent cleared (validation in the pool's thread: worker processes would outlive the test session's
    child-process check; what crosses to them is checked by `test_channel_columns_cross_to_workers`)."""
    src = FakeSheet([WA_HEADER, wa_row(1, "+1 415 555 0199", ""), wa_row(2, "", "yes"), wa_row(3)])
    pool = ValidationPool(US, workers=0)
    ing = SheetIngestor(
        engine=engine,
        schema="ingest",
        cfg=US,
        read=src.read,
        transaction=lambda: transaction(engine, "ingest", "ingest"),
        pool=pool,
    )
    try:
        await ing.run("test")
        pos, envs = await outbox_since(engine, 0)
        assert whatsapp_events(envs) == {
            "ACC-000001": ("created", cp("+14155550199", False)),
            "ACC-000002": ("created", cp("+13125550002", True)),
            "ACC-000003": ("created", cp("+13035550003", False)),
        }
        async with engine.connect() as c:
            hash3 = (
                await c.execute(
                    text("SELECT content_hash FROM ingest.snapshot WHERE account_id = 'ACC-000003'")
                )
            ).scalar()
        assert hash3 == accepted([HEADER, account_row(3)])[0].content_hash  # as without the columns

        await ing.run("test")
        pos, envs = await outbox_since(engine, pos)
        assert envs == []

        src.values[1] = wa_row(1, "+1 415 555 0142", "")  # a new number
        src.values[2] = wa_row(2, "", "no")  # opt-in withdrawn
        src.values[3] = wa_row(3, "", "2025-03-01")  # opted in on the Phone's number
        await ing.run("test")
        pos, envs = await outbox_since(engine, pos)
        assert whatsapp_events(envs) == {
            "ACC-000001": ("updated", cp("+14155550142", False)),
            "ACC-000002": ("updated", cp("+13125550002", False)),
            "ACC-000003": ("updated", cp("+13035550003", True)),
        }

        del src.values[3]
        await ing.run("test")
        pos, envs = await outbox_since(engine, pos)
        assert whatsapp_events(envs) == {"ACC-000003": ("removed", cp("+13035550003", False))}
    finally:
        pool.shutdown()
