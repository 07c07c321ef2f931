"""The Sheets emulator driven only through the real gspread 6 client built by ``open_sheets_client``."""

from __future__ import annotations

import json
import threading
import time
from datetime import date

import gspread
import pytest
import requests
from arrears_cli.demo_sheet import generate_pme_rows, load_into_emulator
from arrears_emulators.sheets.a1 import A1Error, Box, column_index, column_letters, parse_a1, split_sheet
from arrears_ingest.sheets.client import BoundedBackOffHTTPClient, open_sheets_client
from gspread.exceptions import APIError, SpreadsheetNotFound
from gspread.http_client import BackOffHTTPClient

try:  # tests/emulators as a package, or as a plain directory on sys.path (pytest's rootdir insertion)
    from .conftest_sheets import ServerThread, SheetsEmulator, sheets_emulator, sheets_server  # noqa: F401
except ImportError:
    from conftest_sheets import ServerThread, SheetsEmulator, sheets_emulator, sheets_server  # type: ignore[no-redef]  # noqa: F401

SID = "1PmeMasterSheetDemo_abc-XYZ"
ACCOUNTS = [
    ["Account ID", "Customer Name", "Balance", "Status"],
    ["PME-000101", "Ada Lovelace", "$1,234.50", "Open"],
    ["PME-000102", "Alan Turing", "", "Paid"],
    ["PME-000103", "Grace Hopper", "99.9"],
]


def client(emulator: SheetsEmulator, **kwargs: object) -> gspread.Client:
    return open_sheets_client(api_endpoint=emulator.url, credentials_file=None, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def accounts(sheets_emulator: SheetsEmulator) -> gspread.Worksheet:
    sheets_emulator.load(SID, {"Accounts": ACCOUNTS, "My Sheet": [["x", "", "z"]]})
    return client(sheets_emulator).open_by_key(SID).worksheet("Accounts")


# -- A1 notation -----------------------------------------------------------------------------------


def test_a1_notation() -> None:
    assert column_index("A") == 0 and column_index("Z") == 25 and column_index("AA") == 26
    assert column_letters(0) == "A" and column_letters(27) == "AB" and column_letters(18277) == "ZZZ"
    assert parse_a1("B2") == Box(1, 1, 2, 2)
    assert parse_a1("A2:C10") == Box(1, 0, 10, 3)
    assert parse_a1("C10:A2") == Box(1, 0, 10, 3)
    assert parse_a1("$A$1:$B$2") == Box(0, 0, 2, 2)
    assert parse_a1("A:Z") == Box(0, 0, None, 26)
    assert parse_a1("2:5") == Box(1, 0, 5, None)
    assert parse_a1("A5:C") == Box(4, 0, None, 3)
    ref = split_sheet("'It''s mine'!A1:B2")
    assert (ref.sheet, ref.a1) == ("It's mine", "A1:B2")
    assert split_sheet("'My Sheet'").a1 is None
    assert split_sheet("Sheet1").bare
    for bad in ("A", "A0", "A:3", "1:B", "A1:B2:C3", "AAAA1"):
        with pytest.raises(A1Error):
            parse_a1(bad)
    with pytest.raises(A1Error):
        split_sheet("'unterminated!A1")


# -- reads -----------------------------------------------------------------------------------------


def test_open_by_key_and_metadata(sheets_emulator: SheetsEmulator, accounts: gspread.Worksheet) -> None:
    sh = client(sheets_emulator).open_by_key(SID)
    assert sh.id == SID and sh.title == "PME"
    assert [w.title for w in sh.worksheets()] == ["Accounts", "My Sheet"]
    assert (accounts.id, accounts.index, accounts.row_count, accounts.col_count) == (0, 0, 1000, 26)
    with pytest.raises(gspread.WorksheetNotFound):
        sh.worksheet("Nope")
    with pytest.raises(SpreadsheetNotFound):
        client(sheets_emulator).open_by_key("missing-sheet")
    meta = sh.fetch_sheet_metadata({"fields": "sheets(properties(title)),spreadsheetId"})
    assert meta == {
        "spreadsheetId": SID,
        "sheets": [{"properties": {"title": "Accounts"}}, {"properties": {"title": "My Sheet"}}],
    }


def test_reads(sheets_emulator: SheetsEmulator, accounts: gspread.Worksheet) -> None:
    assert accounts.get_all_values() == [row + [""] * (4 - len(row)) for row in ACCOUNTS]
    assert accounts.get_values("A2:B3") == [["PME-000101", "Ada Lovelace"], ["PME-000102", "Alan Turing"]]
    assert accounts.get_values("C2") == [["$1,234.50"]]
    assert accounts.get_values("C3:C4") == [[""], ["99.9"]]  # inner empty cell kept, row padded by gspread
    assert accounts.get_values("D:D") == [["Status"], ["Open"], ["Paid"]]  # trailing empty rows trimmed
    assert accounts.get_values("2:2") == [ACCOUNTS[1]]
    assert "values" not in accounts.client.values_get(SID, "Accounts!F1:G5")  # empty range: no "values" key
    raw = accounts.client.values_get(SID, "Accounts!A1:D2", params={"majorDimension": "COLUMNS"})
    assert raw["range"] == "Accounts!A1:D2" and raw["values"][0] == ["Account ID", "PME-000101"]
    raw = accounts.client.values_get(SID, "'My Sheet'")
    assert raw == {"range": "'My Sheet'!A1:Z1000", "majorDimension": "ROWS", "values": [["x", "", "z"]]}
    ranges = accounts.batch_get(["A1:B1", "C2"])
    assert [r.range for r in ranges] == ["Accounts!A1:B1", "Accounts!C2"]
    assert [list(r) for r in ranges] == [[["Account ID", "Customer Name"]], [["$1,234.50"]]]
    both = accounts.spreadsheet.values_batch_get(["Accounts!A4", "'My Sheet'!A1:C1"])
    assert [r.get("values") for r in both["valueRanges"]] == [[["PME-000103"]], [["x", "", "z"]]]
    with pytest.raises(APIError) as bad:
        accounts.client.values_get(SID, "'No Such Sheet'!A1")
    assert bad.value.code == 400 and "Unable to parse range" in str(bad.value)
    with pytest.raises(APIError) as outside:
        accounts.get_values("A2000")
    assert outside.value.code == 400 and "exceeds grid limits" in str(outside.value)


# -- writes ----------------------------------------------------------------------------------------


def test_update_batch_update_and_grid_growth(
    sheets_emulator: SheetsEmulator, accounts: gspread.Worksheet
) -> None:
    res = accounts.update([["Overdue", "61-90 dpd"]], "E2")
    assert res == {
        "spreadsheetId": SID,
        "updatedRange": "Accounts!E2:F2",
        "updatedRows": 1,
        "updatedColumns": 2,
        "updatedCells": 2,
    }
    res = accounts.batch_update(
        [
            {"range": "E3:F3", "values": [["Current", ""]]},
            {"range": "A1500", "values": [["far below"]]},
            {"range": "AB1", "values": [["wide"]]},
        ]
    )
    assert res["totalUpdatedCells"] == 4 and res["totalUpdatedSheets"] == 1
    assert [r["updatedRange"] for r in res["responses"]] == [
        "Accounts!E3:F3",
        "Accounts!A1500",
        "Accounts!AB1",
    ]
    ws = client(sheets_emulator).open_by_key(SID).worksheet("Accounts")
    assert (ws.row_count, ws.col_count) == (1500, 28)  # the grid grew to fit the writes
    assert ws.get_values("E2:F3") == [["Overdue", "61-90 dpd"], ["Current", ""]]
    with pytest.raises(APIError) as too_big:
        ws.update([["a", "b", "c"]], "A1:B1")
    assert too_big.value.code == 400 and "tried writing to column [C]" in str(too_big.value)

    ws.update([["42", "TRUE", "'007", "=A1"]], "G2", value_input_option="USER_ENTERED")
    assert ws.get_values("G2:J2", value_render_option="UNFORMATTED_VALUE") == [[42, True, "007", "=A1"]]
    assert ws.get_values("G2:J2") == [["42", "TRUE", "007", "=A1"]]
    ws.update([["42"]], "K2", raw=True)
    assert ws.get_values("K2", value_render_option="UNFORMATTED_VALUE") == [["42"]]
    dump = sheets_emulator.dump(SID)
    assert dump["sheets"]["Accounts"][1][4:6] == ["Overdue", "61-90 dpd"]


def test_append_rows(sheets_emulator: SheetsEmulator, accounts: gspread.Worksheet) -> None:
    res = accounts.append_rows(
        [["PME-000104", "Katherine Johnson", "10.00", "Open"], ["PME-000105", "Dorothy Vaughan"]]
    )
    assert res["tableRange"] == "Accounts!A1:D4"
    assert res["updates"] == {
        "spreadsheetId": SID,
        "updatedRange": "Accounts!A5:D6",
        "updatedRows": 2,
        "updatedColumns": 4,
        "updatedCells": 6,
    }
    res = accounts.append_rows([["PME-000106"]], insert_data_option="INSERT_ROWS")
    assert res["updates"]["updatedRange"] == "Accounts!A7"
    values = accounts.get_all_values()
    assert [r[0] for r in values[-3:]] == ["PME-000104", "PME-000105", "PME-000106"]
    empty = client(sheets_emulator).open_by_key(SID).worksheet("My Sheet")
    res = empty.append_rows([["q"]], table_range="A5:C5")
    assert "tableRange" not in res and res["updates"]["updatedRange"] == "'My Sheet'!A5"


# -- quotas ----------------------------------------------------------------------------------------


def test_read_quota_429_with_plain_client(
    sheets_emulator: SheetsEmulator, accounts: gspread.Worksheet
) -> None:
    sheets_emulator.limits(read_requests_per_minute_per_user=2)
    accounts.get_values("A1")
    accounts.get_values("A1")
    with pytest.raises(APIError) as exc:
        accounts.get_values("A1")
    assert exc.value.code == 429
    body = exc.value.response.json()["error"]
    assert body["status"] == "RESOURCE_EXHAUSTED"
    assert body["message"].startswith(
        "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per user'"
    )
    accounts.update([["still writable"]], "E1")  # writes are metered separately
    other_user = open_sheets_client(
        api_endpoint=sheets_emulator.url, credentials_file=None, emulator_token="someone-else"
    )
    assert other_user.http_client.values_get(SID, "Accounts!A1")["values"] == [["Account ID"]]
    stats = sheets_emulator.stats()
    assert stats["throttled_reads"] == 1 and stats["writes"] == 1


def test_project_write_quota(sheets_emulator: SheetsEmulator, accounts: gspread.Worksheet) -> None:
    sheets_emulator.limits(write_requests_per_minute_per_project=1)
    accounts.update([["a"]], "E1")
    other = open_sheets_client(api_endpoint=sheets_emulator.url, credentials_file=None, emulator_token="u2")
    with pytest.raises(APIError) as exc:
        other.open_by_key(SID).worksheet("Accounts").update([["b"]], "E2")
    assert (
        exc.value.code == 429
        and "'Write requests per minute'" in exc.value.response.json()["error"]["message"]
    )


def test_backoff_client_rides_out_429(sheets_emulator: SheetsEmulator, accounts: gspread.Worksheet) -> None:
    sheets_emulator.limits(read_requests_per_minute_per_user=2, window_s=1.0)
    gc = client(sheets_emulator, backoff=True, initial_backoff_s=0.4, max_backoff_s=1.0)
    assert isinstance(gc.http_client, BackOffHTTPClient)
    ws = gc.open_by_key(SID).worksheet("Accounts")  # two reads: the user's quota is now used up
    started = time.monotonic()
    assert ws.get_values("A1") == [["Account ID"]]
    assert time.monotonic() - started < 5
    assert sheets_emulator.stats()["throttled_reads"] >= 1


# -- faults ----------------------------------------------------------------------------------------


def test_outage_and_recovery(sheets_emulator: SheetsEmulator, accounts: gspread.Worksheet) -> None:
    sheets_emulator.fault(kind="outage", enabled=True)
    with pytest.raises(APIError) as exc:
        accounts.get_all_values()
    assert exc.value.code == 503 and exc.value.response.json()["error"]["status"] == "UNAVAILABLE"
    patient = client(sheets_emulator, backoff=True, max_retries=2, initial_backoff_s=0.01)
    with pytest.raises(APIError):
        patient.open_by_key(SID)
    assert sheets_emulator.stats()["faults_injected"] == 4  # 1 + (1 + 2 retries)
    sheets_emulator.fault(kind="outage", enabled=False)
    assert patient.open_by_key(SID).worksheet("Accounts").get_values("A1") == [["Account ID"]]


def test_next_n_errors_then_success(sheets_emulator: SheetsEmulator, accounts: gspread.Worksheet) -> None:
    sheets_emulator.fault(kind="error", status=500, count=2)
    retrying = client(sheets_emulator, backoff=True, initial_backoff_s=0.01)
    assert retrying.open_by_key(SID).title == "PME"
    assert sheets_emulator.stats()["faults_injected"] == 2
    sheets_emulator.fault(kind="error", status=503, count=1)
    with pytest.raises(APIError) as exc:
        accounts.update([["x"]], "E1")
    assert exc.value.code == 503
    assert "values" not in accounts.client.values_get(SID, "Accounts!E1")  # the failed write was not applied


def test_timeout_and_slow(sheets_emulator: SheetsEmulator, accounts: gspread.Worksheet) -> None:
    impatient = client(sheets_emulator, timeout_s=0.3)
    ws = impatient.open_by_key(SID).worksheet("Accounts")
    sheets_emulator.fault(kind="timeout", count=1, seconds=5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        ws.get_values("A1")
    sheets_emulator.control.delete("/_emulator/faults").raise_for_status()  # releases the hung request
    sheets_emulator.fault(kind="slow", ms=150, count=1)
    started = time.monotonic()
    assert ws.get_values("A1") == [["Account ID"]]
    assert time.monotonic() - started >= 0.15


# -- scale -----------------------------------------------------------------------------------------


def test_100k_rows_get_all_values_timing(sheets_emulator: SheetsEmulator) -> None:
    tails = [[f"value {k}-{j}" for j in range(13)] for k in range(97)]
    rows = [[f"PME-{i:06d}", f"Customer {i}", f"c{i}@example.com"] + tails[i % 97] for i in range(100_000)]
    sheets_emulator.load("big", {"Accounts": rows})
    ws = client(sheets_emulator).open_by_key("big").worksheet("Accounts")
    timings = []
    for _ in range(2):  # first read encodes, second is served from the emulator's response cache
        wall, cpu = time.perf_counter(), time.process_time()
        values = ws.get_all_values()
        timings.append((time.perf_counter() - wall, time.process_time() - cpu))
        assert len(values) == 100_000 and len(values[0]) == 16 and values[-1][0] == "PME-099999"
    print("\n100k x 16 get_all_values: " + ", ".join(f"wall {w:.2f}s cpu {c:.2f}s" for w, c in timings))
    # CPU time of this process (client + in-process server): robust to other load on the machine
    assert min(c for _, c in timings) < 3.0


def test_demo_sheet_loads_and_reads_back(sheets_emulator: SheetsEmulator) -> None:
    rows = generate_pme_rows(500, seed=11, today=date(2025, 3, 31))
    load_into_emulator(sheets_emulator.url, "demo", rows)
    ws = client(sheets_emulator).open_by_key("demo").worksheet("Accounts")
    values = ws.get_all_values()
    assert values[0] == rows[0]
    assert values[1:] == [r + [""] * (len(rows[0]) - len(r)) for r in rows[1:]]
    ws.batch_update([{"range": "Q2:R2", "values": [["61-90", "no payment since 01/05/2025"]]}])
    assert ws.get_values("Q2:R2") == [["61-90", "no payment since 01/05/2025"]]


def test_no_threads_left_behind_by_clients(
    sheets_emulator: SheetsEmulator, accounts: gspread.Worksheet
) -> None:
    before = threading.active_count()
    for _ in range(3):
        client(sheets_emulator).open_by_key(SID).worksheet("Accounts").get_values("A1")
    assert threading.active_count() == before
    assert isinstance(client(sheets_emulator, backoff=True).http_client, BoundedBackOffHTTPClient)


def test_server_thread_stops() -> None:
    from arrears_emulators.sheets import create_app

    before = threading.active_count()
    server = ServerThread(create_app()).start()
    assert threading.active_count() == before + 1
    server.stop()
    assert threading.active_count() == before


# -- client factory ----------------------------------------------------------------------------------


def test_client_factory_credentials(tmp_path) -> None:
    from google.oauth2 import credentials as user_credentials

    authorized_user = {
        "type": "authorized_user",
        "client_id": "id.apps.googleusercontent.com",
        "client_secret": "secret",
        "refresh_token": "1//refresh",
    }
    path = tmp_path / "user.json"
    path.write_text(json.dumps(authorized_user))
    gc = open_sheets_client(api_endpoint=None, credentials_file=str(path))
    assert isinstance(gc.http_client.auth, user_credentials.Credentials)
    assert gc.http_client.auth.scopes == ["https://www.googleapis.com/auth/spreadsheets"]
    assert gc.http_client.timeout == 30
    assert not gc.http_client.session.get_adapter(
        "https://sheets.googleapis.com/v4/x"
    ).__class__.__name__.startswith("EndpointRewrite")
    with pytest.raises(ValueError, match="credentials"):
        open_sheets_client(api_endpoint=None, credentials_file=None)
    with pytest.raises(ValueError, match="unsupported credentials type"):
        open_sheets_client(
            api_endpoint=None, credentials_file=None, credentials_info={"type": "external_account"}
        )
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        open_sheets_client(api_endpoint=None, credentials_file=str(tmp_path / "broken.json"))
    with pytest.raises(FileNotFoundError):
        open_sheets_client(api_endpoint=None, credentials_file=str(tmp_path / "missing.json"))


def test_client_factory_service_account() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "arrears-test",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "ingest@arrears-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    gc = open_sheets_client(api_endpoint=None, credentials_file=None, credentials_info=info, backoff=True)
    assert isinstance(gc.http_client.auth, service_account.Credentials)
    assert gc.http_client.auth.service_account_email == info["client_email"]
    assert isinstance(gc.http_client, BoundedBackOffHTTPClient)


def test_quota_429s_are_waited_out_within_a_bound(
    sheets_emulator: SheetsEmulator, accounts: gspread.Worksheet
) -> None:
    """Issue #13: the Sheets quota refills per minute, so a 429 is waited out (reported through
    `on_quota_wait`, which ingest uses to mark the source degraded) instead of spending the few retries of
    an error; bounded by `quota_wait_max_s`."""
    sheets_emulator.limits(read_requests_per_minute_per_user=2, window_s=2.0)
    waits: list[float] = []
    gc = client(
        sheets_emulator,
        backoff=True,
        max_retries=0,  # no retries for errors at all: only the quota wait can save the read
        initial_backoff_s=0.4,
        quota_wait_max_s=15.0,
        on_quota_wait=waits.append,
    )
    ws = gc.open_by_key(SID).worksheet("Accounts")  # two reads: the quota is used up
    assert ws.get_values("A1") == [["Account ID"]]
    assert waits and sum(waits) <= 15.0

    sheets_emulator.limits(read_requests_per_minute_per_user=2, window_s=60.0)
    bounded = client(
        sheets_emulator, backoff=True, initial_backoff_s=0.2, quota_wait_max_s=1.0, emulator_token="u-bounded"
    )
    bws = bounded.open_by_key(SID).worksheet("Accounts")
    started = time.monotonic()
    with pytest.raises(APIError) as exc:
        bws.get_values("A1")
    assert exc.value.code == 429 and time.monotonic() - started < 3
