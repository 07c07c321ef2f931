"""Out-of-hours acknowledgements through the real responses service (real broker, real Postgres): the team's
calendar arrives on `team-calendars` as escalation publishes it, a reply while the team is closed gets one
acknowledgement (per conversation and closed period, in the customer's language, with the next opening
time), an in-hours reply none, a STOP or an opted-out customer none."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from arrears_responses.__main__ import definition
from arrears_responses.autoreplies.out_of_hours import format_opening, guess_locale
from arrears_responses.settings import ResponsesSettings
from arrears_shared.cloudevents import encode
from arrears_shared.events import TeamCalendarChanged
from arrears_shared.service import ServiceHost
from arrears_shared.working_time import WEEKDAYS, TeamCalendar, next_opening
from sqlalchemy import text

from .test_webhooks import (
    KEY,
    collect_notices,
    inbound,
    index_contact,
    service_engine,
    sign,
    unique_number,
    wait_for,
)

TEAM = "ooh-team"


@pytest.fixture(scope="module")
async def service(
    broker: Any, fresh_database_url: Callable[..., str]
) -> AsyncIterator[tuple[ServiceHost, Any]]:
    settings = ResponsesSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=fresh_database_url("responses_ooh"),
        quo_webhook_signing_key=KEY,
        runner_poll_timeout_ms=100,
        outbox_poll_s=0.02,
        responses_out_of_hours_ack=True,
        responses_out_of_hours_team=TEAM,
        responses_brand_name="Acme",
    )
    host = ServiceHost(definition(settings))
    app = host.build_app()
    await host.start()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://responses"
    ) as client:
        yield host, client
    await host.stop()


def closed_now() -> dict[str, Any]:
    """Open only on the weekday three days from now (UTC), 09:00-17:00: closed right now, whatever the time."""
    day = WEEKDAYS[(datetime.now(UTC).weekday() + 3) % 7]
    return {"timezone": "UTC", "hours": {day: [{"start": "09:00", "end": "17:00"}]}, "holidays": []}


def open_now() -> dict[str, Any]:
    return {
        "timezone": "UTC",
        "hours": {d: [{"start": "00:00", "end": "00:00"}] for d in WEEKDAYS},
        "holidays": [],
    }


async def publish_calendar(bootstrap: str, version: int, cal: dict[str, Any]) -> None:
    ev = TeamCalendarChanged(
        account_id=f"team:{TEAM}", team=TEAM, version=version, changed_at=datetime.now(UTC), **cal
    )
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await p.start()
    try:
        rec = encode(ev, source="escalation", id=f"team-calendar:{TEAM}:{version}")
        await p.send_and_wait(rec.topic, rec.value, key=rec.key, headers=rec.headers)
    finally:
        await p.stop()


async def replicated_version(host: ServiceHost) -> int | None:
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        return (
            await c.execute(text("SELECT version FROM responses.team_calendars WHERE team = :t"), {"t": TEAM})
        ).scalar_one_or_none()


async def calendar_at(host: ServiceHost, version: int, cal: dict[str, Any], broker: Any) -> None:
    await publish_calendar(broker.bootstrap_servers, version, cal)

    async def arrived() -> bool:
        return await replicated_version(host) == version

    await wait_for(arrived, within_s=30)


async def say(client: Any, number: str, words: str) -> None:
    body = inbound(number, words)
    r = await client.post("/webhooks/quo", content=body, headers=sign(body))
    assert r.json()["status"] == "processed", r.text


async def acks_for(host: ServiceHost, broker: Any, account: str, within_s: float = 8) -> list[Any]:
    notices = await collect_notices(
        broker.bootstrap_servers, account, service_engine(host), within_s=within_s
    )
    return [n for n in notices if n.purpose == "out_of_hours_ack"]


async def test_out_of_hours_reply_gets_one_acknowledgement_and_an_in_hours_reply_none(
    service, broker
) -> None:
    host, client = service
    await calendar_at(host, 1, closed_now(), broker)
    account, number = f"PME-OOH-{uuid.uuid4().hex[:6]}", unique_number()
    await index_contact(host, broker, account, number, "n-ooh")
    await say(client, number, "Can you call me about my balance?")
    await say(client, number, "hello? anyone there")  # same closed period: no second acknowledgement
    acks = await acks_for(host, broker, account)
    assert len(acks) == 1, acks
    ack = acks[0]
    opens = next_opening(datetime.now(UTC), TeamCalendar.model_validate(closed_now()))
    assert ack.channel == "sms" and ack.to == number and ack.locale == "en"
    assert ack.text.startswith("Acme: thanks for your message. We're closed right now")
    assert format_opening(opens, TeamCalendar.model_validate(closed_now()).zone, "en") in ack.text
    assert ack.text.endswith("Reply STOP to opt out.")  # an SMS from a collector names the opt-out
    assert ack.expires_at == opens  # a person answers once the team is open: a late one is dropped
    assert ack.notice_id.startswith(f"{account}:auto:out_of_hours_ack:")

    # the team opens (a new version of its calendar): the next reply is answered by people, not by us
    await calendar_at(host, 2, open_now(), broker)
    other, other_number = f"PME-IN-{uuid.uuid4().hex[:6]}", unique_number()
    await index_contact(host, broker, other, other_number, "n-in")
    await say(client, other_number, "Can you call me about my balance?")
    assert await acks_for(host, broker, other, within_s=4) == []
    # an older version arriving late changes nothing
    await publish_calendar(broker.bootstrap_servers, 1, closed_now())
    await say(client, other_number, "still there?")
    assert await replicated_version(host) == 2
    assert await acks_for(host, broker, other, within_s=4) == []
    await calendar_at(host, 3, closed_now(), broker)  # closed again for the tests below


async def test_spanish_reply_is_acknowledged_in_spanish(service, broker) -> None:
    host, client = service
    await calendar_at(host, 10, closed_now(), broker)
    account, number = f"PME-ES-{uuid.uuid4().hex[:6]}", unique_number()
    await index_contact(host, broker, account, number, "n-es")
    await say(client, number, "Hola, ¿me pueden llamar mañana por favor?")
    acks = await acks_for(host, broker, account)
    assert len(acks) == 1 and acks[0].locale == "es"
    assert "estamos cerrados" in acks[0].text and " de " in acks[0].text and "STOP" in acks[0].text


async def test_never_for_a_stop_nor_to_an_opted_out_customer(service, broker) -> None:
    host, client = service
    await calendar_at(host, 20, closed_now(), broker)
    account, number = f"PME-STOP-{uuid.uuid4().hex[:6]}", unique_number()
    await index_contact(host, broker, account, number, "n-stop")
    await say(client, number, "STOP")
    await say(
        client, number, "why do you keep writing"
    )  # after the opt-out: nothing automatic but the one confirmation
    notices = await collect_notices(broker.bootstrap_servers, account, service_engine(host), within_s=8)
    assert sorted(n.purpose for n in notices) == ["opt_out_confirmation"], notices


def test_off_by_default() -> None:
    # dispatchers of an older release dead-letter the new purpose: an operator turns it on after upgrading
    assert ResponsesSettings.model_fields["responses_out_of_hours_ack"].default is False


@pytest.mark.parametrize(
    ("words", "locale"),
    [
        ("Can you call me tomorrow?", "en"),
        ("Hola, ya pagué la cuenta", "es"),
        ("te pago el viernes", "es"),
        ("¿cuánto debo?", "es"),
        ("ok", "en"),
        ("👍", "en"),
    ],
)
def test_guess_locale(words: str, locale: str) -> None:
    assert guess_locale(words, "en") == locale


def test_opening_time_in_each_locale() -> None:
    at = datetime(2026, 12, 7, 14, tzinfo=UTC)
    from zoneinfo import ZoneInfo

    assert format_opening(at, ZoneInfo("America/New_York"), "en") == "Monday, December 7 at 9:00 AM EST"
    assert (
        format_opening(at, ZoneInfo("America/Mexico_City"), "es")
        == "el lunes 7 de diciembre a las 08:00 (CST)"
    )
    assert (
        format_opening(at + timedelta(hours=10), ZoneInfo("UTC"), "en")
        == "Tuesday, December 8 at 12:00 AM UTC"
    )
