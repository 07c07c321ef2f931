"""Reply understanding end to end (issue 12): every service its own OS process, real broker and PostgreSQL,
sends counted at the QUO and Gmail emulators.

- **A Spanish opt-out by SMS stops all further SMS within one hop.** With the segmenter stopped (so nothing
  but the dispatcher can act), a plain-language Spanish "stop texting me" goes QUO webhook -> responses
  (classified opt-out) -> `reply-received` -> dispatcher-sms, which records the opt-out and sends the one
  confirmation. Then a supervisor's send-now with the gate override: email goes, SMS does not.
- **The fail-safe.** With responses restarted so that it trusts no learned verdict (every reply below the
  review threshold, any opt-out probability a possible opt-out), an ordinary reply pauses SMS to that
  account: a send-now is emailed but the SMS waits; escalation opens an urgent review task; a collector
  marks the reply "other" through the API; the held SMS then goes out, once, and the task is done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from arrears_cli.demo_sheet import load_into_emulator
from arrears_cli.stack.platform import SPREADSHEET_ID, Platform
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_shared.db.engine import make_engine
from sqlalchemy import text

from .support import auth, run_explained, running_platform
from .test_loop import (
    Account,
    emails_to,
    ingest_sheet,
    pick_locale,
    reply_sms,
    sheet_rows,
    sms_texts,
    sms_to,
    wait_counts,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(360)]

SPANISH_OPT_OUT = "Ya no me manden más mensajes por favor"


@pytest.fixture(scope="module")
def platform(pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(pg, tmp_path_factory, "e2e-intents") as p:
        yield p


def query(p: Platform, sql: str, **params: Any) -> list[Any]:
    async def go() -> list[Any]:
        engine = make_engine(p.database_url)
        try:
            async with engine.connect() as c:
                return list((await c.execute(text(sql), params)).all())
        finally:
            await engine.dispose()

    return asyncio.run(go())


def send_now(p: Platform, account_id: str) -> None:
    r = httpx.post(
        f"{p.service_url('escalation')}/accounts/{account_id}/send-now",
        json={"step": 0, "gate_override": True, "reason": "customer asked for the notice today"},
        headers=auth(p, "supervisor"),
        timeout=10,
    )
    assert r.status_code == 202, r.text


def tasks(p: Platform, account_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{p.service_url('escalation')}/tasks?account_id={account_id}", headers=auth(p), timeout=10)
    return list(r.json()) if r.status_code == 200 else []


def test_spanish_opt_out_and_the_fail_safe(platform: Platform) -> None:
    run_explained(platform, run, ["E2E-IN-ES1", "E2E-IN-UN2"])


def run(p: Platform) -> None:
    loc = pick_locale(datetime.now(UTC))
    today = datetime.now(ZoneInfo(loc.zone)).date()
    spanish = Account("E2E-IN-ES1", loc.phone(61), "e2e.in.es1@example.com", dpd=5)
    unsure = Account("E2E-IN-UN2", loc.phone(62), "e2e.in.un2@example.com", dpd=5)
    load_into_emulator(
        p.emulator_url("sheets"), SPREADSHEET_ID, sheet_rows([spanish, unsure], loc, today, [])
    )
    assert ingest_sheet(p)["accepted"] == 2
    wait_counts(p, sms=2, email=2)  # the first reminder to both, on both channels

    # -- a Spanish opt-out, in words, reaches dispatcher-sms directly (the segmenter is not running) --------
    p.supervisor.stop("segmenter")
    reply_sms(p, spanish.phone, SPANISH_OPT_OUT)
    wait_for(
        "dispatcher-sms recorded the opt-out from the reply itself",
        lambda: query(
            p, "SELECT 1 FROM dispatcher_sms.opt_outs WHERE account_id = :a AND channel = 'sms'", a=spanish.id
        ),
    )
    [reply] = query(
        p, "SELECT intent, confidence, rule FROM responses.replies WHERE account_id = :a", a=spanish.id
    )
    assert (reply.intent, reply.rule) == ("opt_out", "model") and reply.confidence >= 0.5, reply
    wait_for("the one opt-out confirmation", lambda: len(sms_texts(p, spanish.phone)) == 2)
    assert "unsubscribed" in sms_texts(p, spanish.phone)[1]
    p.restart_service("segmenter", env={})
    send_now(p, spanish.id)
    wait_for("the email of the send-now", lambda: emails_to(p, spanish.email) == 2)
    time.sleep(3)
    assert sms_to(p, spanish.phone) == 2, "an SMS went to a customer who opted out in Spanish"

    # -- the fail-safe: an unsure reply holds SMS until a person decides ---------------------------------------
    p.restart_service(
        "responses",
        env={
            "ARREARS_RESPONSES_INTENT_REVIEW_BELOW": "0.9999",
            "ARREARS_RESPONSES_INTENT_POSSIBLE_OPT_OUT_AT": "0",
        },
    )
    reply_sms(p, unsure.phone, "mmm ok lo voy a pensar")
    wait_for(
        "dispatcher-sms holds the account",
        lambda: query(p, "SELECT 1 FROM dispatcher_sms.contact_holds WHERE account_id = :a", a=unsure.id),
    )
    [held] = query(
        p,
        "SELECT reply_id, intent, needs_review, possible_opt_out FROM responses.replies WHERE account_id = :a",
        a=unsure.id,
    )
    assert (held.intent, held.needs_review, held.possible_opt_out) == ("other", True, True), held
    wait_for("an urgent review task", lambda: [t["kind"] for t in tasks(p, unsure.id)] == ["review_opt_out"])
    send_now(p, unsure.id)
    wait_for("the email of the send-now", lambda: emails_to(p, unsure.email) == 2)
    time.sleep(3)
    assert sms_to(p, unsure.phone) == 1, "an SMS went out while a possible opt-out waited for a person"
    # a collector decides: not an opt-out
    r = httpx.post(
        f"{p.service_url('responses')}/replies/{held.reply_id}/intent",
        json={"intent": "other"},
        headers=auth(p, "collector"),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    wait_for("the held SMS sent after the decision", lambda: sms_to(p, unsure.phone) == 2)
    wait_for("the review task done", lambda: [t["status"] for t in tasks(p, unsure.id)] == ["done"])
    assert not query(
        p,
        "SELECT 1 FROM dispatcher_sms.contact_holds WHERE account_id = :a AND released_at IS NULL",
        a=unsure.id,
    )
    time.sleep(2)
    assert (sms_to(p, unsure.phone), sms_to(p, spanish.phone)) == (2, 2), (
        "nothing twice, nothing to the opt-out"
    )
