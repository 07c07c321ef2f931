"""SMS down -> email (issue #18): dispatcher-sms and dispatcher-email as whole services (StreamRunner, outbox
relay, send loops) on the real broker and one database, QUO and Gmail emulators with injected faults; every
send counted at the emulators' ledgers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from arrears_dispatcher_email.__main__ import definition as email_definition
from arrears_dispatcher_email.settings import EmailSettings
from arrears_dispatcher_sms.__main__ import definition as sms_definition
from arrears_shared.control import halts
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.delivery.failover import failover_notice_id
from arrears_shared.delivery.gate import GateDecision, compliance_gate
from arrears_shared.events import Event, NoticeDue
from arrears_shared.service import ServiceHost
from sqlalchemy import text

from .helpers import SENDER, control, drain, feed, ledger, notice, sms_settings, states
from .test_service import publish

OUTAGE = {"error_5xx": {"probability": 1.0, "status": 503}}


def with_email(n: NoticeDue) -> NoticeDue:
    """The SMS notice of a step whose policy falls back to email (as the segmenter emits it)."""
    return n.model_copy(
        update={
            "fallback_channels": ["email"],
            "fallback_to": {"email": f"{n.account_id.lower()}@example.com"},
        }
    )


class Stack:
    def __init__(self, broker: Any, db: str, quo: Any, gmail: Any) -> None:
        self.broker, self.db, self.quo, self.gmail = broker, db, quo, gmail
        self.hosts: list[ServiceHost] = []
        # The session's broker still holds earlier tests' notices, and a new consumer group reads from the
        # start: the dispatchers here send only this test's accounts (the others are suppressed by the gate
        # before any provider call), so a fault aimed at "the next send" hits this test's notice.
        self.mine: set[str] = set()
        real = compliance_gate()

        async def gate(n: NoticeDue, now: Any, recent: Any) -> GateDecision:
            if n.account_id not in self.mine:
                return GateDecision("suppress", rule="another_test")
            return await real(n, now, recent)

        self.gate = gate

    async def publish(self, events: list[tuple[Event, str]]) -> None:
        """Publish this test's notices (their accounts are the ones the dispatchers send to)."""
        self.mine.update(ev.account_id for ev, _ in events)
        await publish(self.broker.bootstrap_servers, events)

    async def start(self, **sms: Any) -> None:
        tag = uuid.uuid4().hex[:6]
        base: dict[str, Any] = {
            "kafka_bootstrap_servers": self.broker.bootstrap_servers,
            "dispatch_breaker_failures": 2,
            "dispatch_breaker_cooldown_s": 2.0,
            "dispatch_failover_after_s": 1.5,
            "dispatch_failover_interval_s": 0.2,
            "dispatch_max_attempts": 50,
        }
        base.update(sms)
        s = sms_settings(self.quo.url, self.db, **base)
        e = EmailSettings(
            service_name="dispatcher-email",
            database_url=self.db,
            kafka_bootstrap_servers=self.broker.bootstrap_servers,
            gmail_api_endpoint=self.gmail.url,
            gmail_token="emulator-token",
            gmail_sender=SENDER,
            gmail_timeout_s=3.0,
            dispatch_idle_poll_s=0.05,
        )
        self.hosts = [
            ServiceHost(sms_definition(s, group=f"dispatcher-sms-{tag}", gate=self.gate)),
            ServiceHost(email_definition(e, group=f"dispatcher-email-{tag}", gate=self.gate)),
        ]
        for h in self.hosts:
            await h.start()

    async def stop(self) -> None:
        for h in reversed(self.hosts):
            await h.stop()

    async def state(self, notice_id: str) -> tuple[str, str | None]:
        ae = make_engine(self.db)
        try:
            async with ae.connect() as c:
                r = (
                    await c.execute(
                        text("SELECT state, last_error FROM dispatcher_sms.deliveries WHERE notice_id = :id"),
                        {"id": notice_id},
                    )
                ).one_or_none()
            return ("", None) if r is None else (r.state, r.last_error)
        finally:
            await ae.dispose()


@pytest.fixture
async def stack(
    broker: Any, fresh_database_url: Callable[..., str], quo: Any, gmail: Any
) -> AsyncIterator[Stack]:
    db = fresh_database_url("sms_failover")
    await asyncio.to_thread(upgrade, db, "dispatcher-sms")
    await asyncio.to_thread(upgrade, db, "dispatcher-email")
    st = Stack(broker, db, quo, gmail)
    yield st
    await st.stop()


async def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def sms_sends(quo: Any, notices: list[NoticeDue]) -> Counter[str]:
    to = {n.to for n in notices}
    return Counter(e["recipient"] for e in ledger(quo.url)["entries"] if e["recipient"] in to)


def email_sends(gmail: Any, notices: list[NoticeDue]) -> Counter[str]:
    ids = {failover_notice_id(n.notice_id, "sms", "email") for n in notices}
    return Counter(e["notice_id"] for e in ledger(gmail.url)["entries"] if e["notice_id"] in ids)


async def test_outage_switches_to_email_once_and_back(stack: Stack) -> None:
    """QUO answers 503 to every send: after the configured time the queued SMS steps with an email fallback go
    by email, once each; steps without one wait and go by SMS after recovery; later steps go by SMS again."""
    control(stack.quo.url, "POST", "faults", OUTAGE)
    await stack.start()
    switchable = [with_email(notice()) for _ in range(6)]
    waiting = [notice() for _ in range(2)]
    events: list[tuple[Event, str]] = [(n, f"nd-{n.notice_id}") for n in [*switchable, *waiting]]
    started = time.monotonic()
    await stack.publish(events)

    await wait_for(lambda: sum(email_sends(stack.gmail, switchable).values()) == 6, "the email fallbacks")
    assert time.monotonic() - started >= 1.5  # not before the circuit had been open the configured time
    assert sms_sends(stack.quo, [*switchable, *waiting]) == Counter()
    for n in switchable:
        state, why = await stack.state(n.notice_id)
        assert state == "suppressed" and why is not None and why.startswith("failed_over:email:")
    for n in waiting:  # no email fallback: it waits (queued, or `sending` while it carries a half-open trial)
        assert (await stack.state(n.notice_id))[0] in ("queued", "sending")

    # a replay of the notices (same and new ce_ids) changes nothing
    await stack.publish(events + [(n, str(uuid.uuid4())) for n in switchable])

    control(stack.quo.url, "DELETE", "faults", {})
    await wait_for(lambda: sum(sms_sends(stack.quo, waiting).values()) == 2, "the waiting SMS after recovery")
    after = [with_email(notice()) for _ in range(3)]  # switched back: SMS again
    await stack.publish([(n, f"nd-{n.notice_id}") for n in after])
    await wait_for(lambda: sum(sms_sends(stack.quo, after).values()) == 3, "SMS after the switch back")
    await asyncio.sleep(1.5)  # give a double send the chance to show up

    assert email_sends(stack.gmail, switchable) == Counter(
        {failover_notice_id(n.notice_id, "sms", "email"): 1 for n in switchable}
    )
    assert sms_sends(stack.quo, switchable) == Counter()
    assert sms_sends(stack.quo, [*waiting, *after]) == Counter({n.to: 1 for n in [*waiting, *after]})
    assert email_sends(stack.gmail, [*waiting, *after]) == Counter()


async def test_a_halted_sms_step_is_not_moved_to_email(stack: Stack) -> None:
    """An incident halt of the SMS channel freezes its notices where they are: QUO down past the failover time
    moves nothing to email while the halt holds; after the resume (QUO still down) each step goes by email once."""
    ae = make_engine(stack.db)
    try:
        control(stack.quo.url, "POST", "faults", OUTAGE)
        await stack.start()
        # the outage is seen first (steps without a fallback fail against it and open the circuit) ...
        await stack.publish([(n, f"nd-{n.notice_id}") for n in [notice() for _ in range(3)]])
        await asyncio.sleep(3.0)
        # ... then the channel is halted and steps that could fail over arrive
        async with ae.begin() as c:
            halt = await halts.set_halt(c, "channel", "sms", reason="incident drill", by="tests")
        held = [with_email(notice()) for _ in range(3)]
        await stack.publish([(n, f"nd-{n.notice_id}") for n in held])
        for n in held:  # read by the SMS dispatcher and queued
            deadline = time.monotonic() + 30.0
            while (await stack.state(n.notice_id))[0] != "queued":
                assert time.monotonic() < deadline, "the notices were not queued"
                await asyncio.sleep(0.2)
        await asyncio.sleep(4.0)  # well past the 1.5 s failover time, many failover rounds
        assert email_sends(stack.gmail, held) == Counter()
        assert sms_sends(stack.quo, held) == Counter()
        for n in held:
            assert (await stack.state(n.notice_id))[0] == "queued"

        async with ae.begin() as c:
            assert await halts.clear_halt(c, halt.halt_id, reason="all clear", by="tests") is not None
        await wait_for(lambda: sum(email_sends(stack.gmail, held).values()) == 3, "the email fallbacks")
        await asyncio.sleep(1.0)
        assert email_sends(stack.gmail, held) == Counter(
            {failover_notice_id(n.notice_id, "sms", "email"): 1 for n in held}
        )
        assert sms_sends(stack.quo, held) == Counter()
    finally:
        await ae.dispose()


async def test_in_doubt_sms_is_not_switched_until_reconciled(stack: Stack) -> None:
    """QUO accepts a send and drops the response (in doubt), then goes down for sends and lookups: the in-doubt
    notice stays unswitched while its neighbours go by email; once QUO is back, reconciliation finds it sent."""
    lookups_down = {"error_5xx": {"probability": 1.0, "operations": ["list"]}}
    control(
        stack.quo.url,
        "POST",
        "faults",
        {"accept_then_drop": {"next": 1, "operations": ["send"]}, **lookups_down},
    )
    await stack.start(dispatch_in_doubt_after_s=0.5, dispatch_reconcile_interval_s=0.3)
    doubtful = with_email(notice())
    await stack.publish([(doubtful, f"nd-{doubtful.notice_id}")])
    await wait_for(lambda: sum(sms_sends(stack.quo, [doubtful]).values()) == 1, "the dropped send")
    control(stack.quo.url, "POST", "faults", OUTAGE)  # sends and reconciliation lookups fail now
    others = [with_email(notice()) for _ in range(3)]
    await stack.publish([(n, f"nd-{n.notice_id}") for n in others])

    await wait_for(lambda: sum(email_sends(stack.gmail, others).values()) == 3, "the email fallbacks")
    await asyncio.sleep(1.0)
    assert (await stack.state(doubtful.notice_id))[0] == "sending"
    assert [e["dropped"] for e in ledger(stack.quo.url)["entries"] if e["recipient"] == doubtful.to] == [True]
    assert email_sends(stack.gmail, [doubtful]) == Counter()

    control(stack.quo.url, "DELETE", "faults", {})

    async def settled() -> str:
        return (await stack.state(doubtful.notice_id))[0]

    deadline = time.monotonic() + 30
    while await settled() != "sent":
        assert time.monotonic() < deadline, "the in-doubt send was not reconciled"
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    assert sms_sends(stack.quo, [doubtful]) == Counter({doubtful.to: 1})
    assert email_sends(stack.gmail, [doubtful]) == Counter()


TWILIO_FROM = "+15550000002"


@pytest.fixture
def twilio() -> Any:
    from arrears_emulators.common import EmulatorServer
    from arrears_emulators.twilio.app import TwilioConfig
    from arrears_emulators.twilio.app import create_app as create_twilio

    with EmulatorServer(create_twilio(TwilioConfig(from_numbers={TWILIO_FROM}))) as srv:
        yield srv


def twilio_sends(twilio: Any, notices: list[NoticeDue]) -> Counter[str]:
    to = {n.to for n in notices}
    return Counter(e["recipient"] for e in ledger(twilio.url)["entries"] if e["recipient"] in to)


async def test_twilio_first_then_email(stack: Stack, twilio: Any) -> None:
    """With Twilio configured, QUO down sends by Twilio (not email); only once Twilio is down too for the
    configured time do queued steps go by email. Each notice reaches its customer once, over all providers."""
    from arrears_emulators.twilio.app import DEFAULT_SID, DEFAULT_TOKEN

    control(stack.quo.url, "POST", "faults", OUTAGE)
    await stack.start(
        twilio_account_sid=DEFAULT_SID,
        twilio_auth_token=DEFAULT_TOKEN,
        twilio_from_number=TWILIO_FROM,
        twilio_base_url=twilio.url,
        twilio_rate_per_s=20.0,
        twilio_timeout_s=3.0,
    )
    first = [with_email(notice()) for _ in range(4)]
    await stack.publish([(n, f"nd-{n.notice_id}") for n in first])
    await wait_for(lambda: sum(twilio_sends(twilio, first).values()) == 4, "the Twilio sends")
    await asyncio.sleep(2.0)  # QUO has been down longer than the failover time: Twilio still carries SMS
    assert email_sends(stack.gmail, first) == Counter()

    control(twilio.url, "POST", "faults", OUTAGE)
    second = [with_email(notice()) for _ in range(3)]
    await stack.publish([(n, f"nd-{n.notice_id}") for n in second])
    await wait_for(lambda: sum(email_sends(stack.gmail, second).values()) == 3, "the email fallbacks")
    await asyncio.sleep(1.0)

    everything = [*first, *second]
    assert sms_sends(stack.quo, everything) == Counter()
    assert twilio_sends(twilio, everything) == Counter({n.to: 1 for n in first})
    assert email_sends(stack.gmail, everything) == Counter(
        {failover_notice_id(n.notice_id, "sms", "email"): 1 for n in second}
    )


async def test_a_long_outage_does_not_use_up_the_attempts_of_waiting_steps(
    make: Callable[..., Any], quo: Any
) -> None:
    """A step without an email fallback waits out an outage far longer than its attempts would last if every
    failed half-open trial counted (here: 2 attempts, a trial every 0.2 s for 3 s): sent once after recovery,
    never dead-lettered."""
    eng = make(dispatch_max_attempts=2, dispatch_breaker_failures=1, dispatch_breaker_cooldown_s=0.2)
    n = notice()
    await feed(eng, [n], "dispatcher_sms")
    control(quo.url, "POST", "faults", OUTAGE)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        await eng.process_batch()
        await asyncio.sleep(0.05)
    row = (await states(eng.engine, "dispatcher_sms"))[n.notice_id]
    assert row["state"] == "queued" and row["attempts"] <= 1, row
    assert "circuit trial failed" in (row["last_error"] or "")
    assert ledger(quo.url)["entries"] == []

    control(quo.url, "DELETE", "faults", {})
    deadline = time.monotonic() + 10.0
    while (await states(eng.engine, "dispatcher_sms"))[n.notice_id]["state"] != "sent":
        assert time.monotonic() < deadline, "not sent after recovery"
        await eng.process_batch()
        await asyncio.sleep(0.1)
    await drain(eng)
    assert sms_sends(quo, [n]) == Counter({n.to: 1})


async def test_a_send_in_doubt_at_twilio_is_reconciled_at_twilio(stack: Stack, twilio: Any) -> None:
    """QUO down; Twilio accepts a send and drops the answer: the notice is looked up at Twilio (found: sent),
    never sent again by Twilio, QUO or email."""
    from arrears_emulators.twilio.app import DEFAULT_SID, DEFAULT_TOKEN

    control(stack.quo.url, "POST", "faults", OUTAGE)
    control(twilio.url, "POST", "faults", {"accept_then_drop": {"next": 1, "operations": ["send"]}})
    await stack.start(
        twilio_account_sid=DEFAULT_SID,
        twilio_auth_token=DEFAULT_TOKEN,
        twilio_from_number=TWILIO_FROM,
        twilio_base_url=twilio.url,
        twilio_rate_per_s=20.0,
        twilio_timeout_s=3.0,
        dispatch_in_doubt_after_s=0.5,
        dispatch_reconcile_interval_s=0.3,
    )
    first = with_email(notice())  # opens QUO's circuit, then goes by Twilio: dropped answer
    await stack.publish([(first, f"nd-{first.notice_id}")])
    deadline = time.monotonic() + 30
    while (await stack.state(first.notice_id))[0] != "sent":
        assert time.monotonic() < deadline, await stack.state(first.notice_id)
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.5)
    assert twilio_sends(twilio, [first]) == Counter({first.to: 1})
    assert ledger(twilio.url)["entries"][0]["dropped"] is True
    assert sms_sends(stack.quo, [first]) == Counter()
    assert email_sends(stack.gmail, [first]) == Counter()
