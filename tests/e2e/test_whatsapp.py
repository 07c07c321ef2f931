"""The WhatsApp channel through the whole platform, as a plugin: the sheet's WhatsApp opt-in column reaches
the segmenter (ingest reads the registry's columns), a policy step lists whatsapp first, the dispatcher sends
the approved template through the Cloud API emulator, a number not on WhatsApp fails after acceptance (a
signed status webhook to responses) and the segmenter falls back to SMS, and a customer's STOP on WhatsApp
opts them out there and is confirmed on WhatsApp. Sends are counted at the emulators."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from arrears_cli.demo_sheet import PME_COLUMNS, load_into_emulator
from arrears_cli.stack.platform import SPREADSHEET_ID, Platform
from arrears_cli.stack.postgres import EmbeddedPostgres

from .support import auth, run_explained, running_platform
from .test_loop import (
    DEFAULT_POLICY,
    Account,
    caught_up,
    channel_state,
    ingest_sheet,
    ledger,
    pick_locale,
    segmenter_account,
    sheet_rows,
    wait_for,
)

WHATSAPP_FIRST = "    channels: [whatsapp, sms, email]\n    channel_mode: fallback\n"


@pytest.fixture(scope="module")
def platform(pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(pg, tmp_path_factory, "e2e-wa") as p:
        yield p


def load_whatsapp_policy(p: Platform) -> None:
    doc = DEFAULT_POLICY.read_text().replace("version: 1", "version: 2")
    doc = doc.replace("    channels: [sms, email]\n", WHATSAPP_FIRST)
    r = httpx.post(
        p.service_url("segmenter") + "/policies",
        content=doc,
        headers={**auth(p, "admin"), "content-type": "application/yaml"},
        timeout=30,
    )
    assert r.status_code == 201, r.text


def whatsapp_sends(p: Platform, phone: str) -> list[dict[str, object]]:
    digits = "".join(ch for ch in phone if ch.isdigit())
    return [e for e in ledger(p, "whatsapp")["entries"] if digits in e["recipients"]]


def sms_sends(p: Platform, phone: str) -> int:
    return int(ledger(p, "quo")["by_recipient"].get(phone.replace(" ", ""), 0))


def test_whatsapp_as_a_plugin_channel(platform: Platform) -> None:
    run_explained(platform, run_whatsapp, ["E2E-W01", "E2E-W02", "E2E-W03"])


def run_whatsapp(p: Platform) -> None:
    loc = pick_locale(datetime.now(UTC))
    today = datetime.now(ZoneInfo(loc.zone)).date()
    opted_in = Account("E2E-W01", loc.phone(41), "w1@example.com", 5)
    no_opt_in = Account("E2E-W02", loc.phone(42), "w2@example.com", 5)
    not_on_whatsapp = Account("E2E-W03", loc.phone(43), "w3@example.com", 5)
    accounts = [opted_in, no_opt_in, not_on_whatsapp]
    rows = sheet_rows(accounts, loc, today, [])
    rows[0] = [*rows[0], "WhatsApp opt-in"]
    opt_ins = {"E2E-W01": (today - timedelta(days=30)).isoformat(), "E2E-W02": "", "E2E-W03": "Y"}
    for row in rows[1:]:
        row.append(opt_ins[row[0]])
    assert rows[0][: len(PME_COLUMNS)] == list(PME_COLUMNS)
    httpx.put(
        p.emulator_url("whatsapp") + "/_emulator/numbers",
        json={"not_on_whatsapp": [not_on_whatsapp.phone]},
        timeout=10,
    ).raise_for_status()
    load_whatsapp_policy(p)
    load_into_emulator(p.emulator_url("sheets"), SPREADSHEET_ID, rows)
    run = ingest_sheet(p)
    assert (run["accepted"], run["rejected"]) == (3, 0), run

    # the opted-in account: one approved template on WhatsApp, nothing by SMS or email
    [template] = wait_for("the WhatsApp reminder", lambda: whatsapp_sends(p, opted_in.phone))
    details = template["details"]
    assert isinstance(details, dict) and details["type"] == "template" and details["template"]
    assert str(template["notice_id"]).endswith(":whatsapp")
    # no opt-in: the step skips WhatsApp and goes by SMS
    wait_for("the SMS to the account without an opt-in", lambda: sms_sends(p, no_opt_in.phone) == 1)
    assert whatsapp_sends(p, no_opt_in.phone) == []
    # accepted by the Cloud API, then failed (131026): the segmenter sends the step by SMS instead, once
    wait_for("the SMS fallback", lambda: sms_sends(p, not_on_whatsapp.phone) == 1)
    assert len(whatsapp_sends(p, not_on_whatsapp.phone)) == 1
    state = wait_for(
        "the failed WhatsApp number marked invalid",
        lambda: channel_state(segmenter_account(p, not_on_whatsapp.id), "whatsapp").get("invalid") or None,
    )
    assert state is True
    assert sms_sends(p, opted_in.phone) == 0

    # the customer answers STOP on WhatsApp: opted out there, one confirmation on WhatsApp (the window is open)
    wait_for("responses to catch up with the sent messages", lambda: caught_up(p, "responses"))
    httpx.post(
        p.emulator_url("whatsapp") + "/_emulator/inbound",
        json={"from": opted_in.phone, "text": "STOP"},
        timeout=10,
    ).raise_for_status()
    wait_for(
        "the WhatsApp opt-out",
        lambda: channel_state(segmenter_account(p, opted_in.id), "whatsapp").get("opted_out"),
    )
    sent = wait_for("the opt-out confirmation", lambda: whatsapp_sends(p, opted_in.phone)[1:])
    assert [e["details"]["type"] for e in sent] == ["text"]  # type: ignore[index]
    assert sms_sends(p, opted_in.phone) == 0 and len(whatsapp_sends(p, opted_in.phone)) == 2
