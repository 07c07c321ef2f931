"""No personal data in errors: a recognisable canary (a name, an email and a phone number no other test uses)
goes through every input of the platform, and must then appear in no service's log line, no dead-letter
header, no metric label and no `/healthz` or `/readyz` answer.

Inputs: sheet rows (one valid account and one rejected row, both carrying the canary), customer replies by
SMS, WhatsApp and email, every public webhook (refused: bad signatures made of the canary), every route of
every service's API (path, query and body values made of the canary, as a valid-looking body and as one that
fails validation), malformed events on every consumed topic (so they dead-letter) and a database constraint
violation quoting the canary. Reject reasons in the database and the records' own payloads are business data
and are not checked here; what is checked is what leaves a process as diagnostics.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pydantic
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from arrears_cli.demo_sheet import load_into_emulator
from arrears_cli.stack.platform import SPREADSHEET_ID, Platform
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_shared import topology
from arrears_shared.db.engine import make_engine
from arrears_shared.events import TYPES_BY_TOPIC
from arrears_shared.redact import describe_error, error_trace
from arrears_shared.stream import dead_letter as dl
from arrears_shared.telemetry import configure_logging
from auth_support import bearer
from backbone.factories import account_changed
from e2e.support import running_platform
from e2e.test_loop import Account, ingest_sheet, pick_locale, reply_sms, sheet_rows, wait_for
from sqlalchemy import text

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CANARY = "Zq9CANARYx"
CANARY_EMAIL = "zq9canaryx@example.com"
CANARY_NAME = f"{CANARY} Doe"
# every service retries a failing record twice, quickly, before dead-lettering it
FAST_DLQ = {
    "ARREARS_RUNNER_RETRY_ATTEMPTS": "2",
    "ARREARS_RUNNER_RETRY_BASE_S": "0.05",
    "ARREARS_RUNNER_RETRY_MAX_S": "0.2",
}


def canary_phone() -> str:
    """A number in the locale where messaging is allowed now (so the valid account is really contacted)."""
    return pick_locale(datetime.now(UTC)).phone(97)


class Leaks:
    """Finds the canary (any case) or the canary phone number (any formatting) in text."""

    def __init__(self, phone: str) -> None:
        self.digits = re.sub(r"\D", "", phone)
        self.found: list[str] = []

    def contains(self, text: str) -> bool:
        return CANARY.lower() in text.lower() or self.digits in re.sub(r"[\s()+.\-]", "", text)

    def check(self, where: str, text: str) -> None:
        for line in text.splitlines() or [text]:
            if self.contains(line):
                self.found.append(f"{where}: {line[:400]}")


# -- a database error quoting the canary --------------------------------------------------------------------


def test_a_constraint_violation_quoting_the_canary_is_described_without_it(
    fresh_database_url: Callable[..., str],
) -> None:
    url = fresh_database_url("nopii")
    phone = canary_phone()
    leaks = Leaks(phone)

    async def violate() -> BaseException:
        engine = make_engine(url)
        try:
            async with engine.begin() as c:
                await c.execute(text("CREATE TABLE people (name text, phone text UNIQUE, age int)"))
            for stmt, params in (
                ("INSERT INTO people VALUES (:n, :p, 1)", {"n": CANARY_NAME, "p": phone}),
                ("INSERT INTO people VALUES (:n, :p, 1)", {"n": CANARY_NAME, "p": phone}),
            ):
                async with engine.begin() as c:
                    await c.execute(text(stmt), params)
        except Exception as e:
            return e
        finally:
            await engine.dispose()
        raise AssertionError("the second insert must violate the unique constraint")

    async def bad_cast() -> BaseException:
        engine = make_engine(url)
        try:
            async with engine.connect() as c:
                await c.execute(text(f"SELECT '{CANARY}'::int"))
        except Exception as e:
            return e
        finally:
            await engine.dispose()
        raise AssertionError("the cast must fail")

    unique = asyncio.run(violate())
    cast = asyncio.run(bad_cast())
    # what the driver says, unredacted, quotes the values: the test would see a leak
    assert leaks.contains(str(getattr(unique, "orig", None).__cause__.detail))  # type: ignore[union-attr]
    assert leaks.contains(str(cast))
    assert "parameters hidden" in str(unique)  # the engine hides the bound values
    for e in (unique, cast):
        described = describe_error(e)
        assert not leaks.contains(described), described
        assert not leaks.contains(error_trace(e)), error_trace(e)
        assert "sqlstate=" in described and "[fp:" in described
    assert "constraint_name=people_phone_key" in describe_error(unique)
    out = io.StringIO()
    configure_logging("nopii-test", stream=out)
    try:
        raise RuntimeError("while saving") from unique
    except RuntimeError:
        logging.getLogger("nopii").exception("save failed", extra={"error": str(unique)})
    finally:
        logging.getLogger().handlers.clear()
    assert not leaks.contains(out.getvalue()), out.getvalue()
    assert "UniqueViolationError" in out.getvalue()


def test_validation_errors_and_chains_keep_locations_and_types_but_no_values() -> None:
    class Person(pydantic.BaseModel):
        age: int
        name: str

        @pydantic.field_validator("name")
        @classmethod
        def known(cls, v: str) -> str:
            raise ValueError(f"unknown person {v!r} ({v})")

    leaks = Leaks("+1 415 555 0197")
    try:
        Person.model_validate({"age": CANARY, "name": CANARY_NAME})
    except pydantic.ValidationError as e:
        invalid = e
    described = describe_error(invalid)
    assert "age: Input should be a valid integer" in described and "type=int_parsing" in described
    assert "name: Value error (message withheld) [type=value_error" in described
    try:
        try:
            raise KeyError(f"{CANARY_EMAIL} +1 415 555 0197")
        except KeyError as inner:
            raise RuntimeError(f"lookup of {CANARY!r} failed") from inner
    except RuntimeError as e:
        chained = e
    trace = error_trace(chained)
    assert (
        trace.index("KeyError")
        < trace.index("direct cause")
        < trace.index("RuntimeError: lookup of '…' failed [fp:")
    )
    assert "in test_validation_errors_and_chains_keep_locations_and_types_but_no_values" in trace
    for diagnostic in (described, trace):
        assert not leaks.contains(diagnostic), diagnostic
    # the same failure, the same fingerprint: occurrences can be grouped without the value
    assert describe_error(RuntimeError(f"lookup of '{CANARY}' failed")) == describe_error(chained)
    assert describe_error(RuntimeError("lookup of 'someone else' failed")) != describe_error(chained)


# -- the whole platform -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def platform(pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(pg, tmp_path_factory, "no-pii", every_service=FAST_DLQ) as p:
        yield p


def test_the_canary_never_reaches_logs_dlq_headers_metrics_or_health(platform: Platform) -> None:
    p = platform
    phone = canary_phone()
    leaks = Leaks(phone)
    feed_sheet(p, phone)
    feed_replies(p, phone)
    with httpx.Client(timeout=30) as http:
        feed_webhooks(p, http)
        calls = feed_apis(p, http, phone)
    assert calls >= 100, calls  # every service's API was really fed
    expected = asyncio.run(feed_malformed_events(p, phone))
    headers = wait_for(
        "every malformed event dead-lettered",
        lambda: (h := asyncio.run(dlq_headers(p))) and len(h) >= expected and h,
        timeout=60,
    )
    time.sleep(2)  # let the last log lines of the handlers land

    for i, hs in enumerate(headers):
        for name, value in hs:
            if name in dl.DLQ_HEADERS:  # the others are the record's own (kept for a replay), like its value
                leaks.check(f"DLQ record {i} header {name}", (value or b"").decode("utf-8", "replace"))
    failed_in_handler = {
        v.decode()
        for hs in headers
        for k, v in hs
        if k == dl.EXCEPTION_FQCN and not v.endswith(b"InvalidEvent")
    }
    assert failed_in_handler, "no event failed in a handler: the runner's error path was not exercised"
    with httpx.Client(timeout=30) as http:
        for svc in topology.services():
            for path in ("/healthz", "/readyz", "/metrics"):
                leaks.check(f"{svc} {path}", http.get(p.service_url(svc) + path).text)
    log_dir = p.supervisor.log_dir
    assert log_dir is not None
    for svc in topology.services():
        log = (log_dir / f"{svc}.log").read_text(errors="replace")
        assert log.strip(), f"{svc} wrote no log"
        leaks.check(f"{svc} log", log)
    assert not leaks.found, "personal data in diagnostics:\n" + "\n".join(leaks.found[:40])


def feed_sheet(p: Platform, phone: str) -> None:
    loc = pick_locale(datetime.now(UTC))
    today = datetime.now(ZoneInfo(loc.zone)).date()
    valid = Account("NOPII-01", phone, CANARY_EMAIL, 5)
    rows = sheet_rows([valid], loc, today, [])
    rows[1][1], rows[1][15] = CANARY_NAME, f"{CANARY} promised to pay"
    bad = ["NOPII-02", CANARY_NAME, CANARY, CANARY, CANARY, CANARY, CANARY, CANARY, CANARY]
    bad += [CANARY, CANARY, CANARY, CANARY, CANARY, CANARY, f"{CANARY} note", "", ""]
    load_into_emulator(p.emulator_url("sheets"), SPREADSHEET_ID, [*rows, bad])
    run = ingest_sheet(p)
    assert (run["accepted"], run["rejected"]) == (1, 1), run


def feed_replies(p: Platform, phone: str) -> None:
    reply_sms(p, phone, f"{CANARY} here, I lost my job, call {phone}")
    for emulator, body in (
        ("whatsapp", {"from": phone, "text": f"{CANARY} cannot pay"}),
        ("gmail", {"from": CANARY_EMAIL, "subject": CANARY, "body": f"{CANARY_NAME} disputes this"}),
    ):
        httpx.post(p.emulator_url(emulator) + "/_emulator/inbound", json=body, timeout=10).raise_for_status()


CANARY_HEADERS = {
    "openphone-signature": f"hmac;1;{CANARY};{CANARY}",
    "x-hub-signature-256": f"sha256={CANARY}",
    "stripe-signature": f"t={CANARY},v1={CANARY}",
    "x-signature": CANARY,
    "authorization": f"Bearer {CANARY}",
}


def feed_webhooks(p: Platform, http: httpx.Client) -> None:
    """Every public POST route, with a canary body and canary signatures (refused)."""
    admin = bearer(p.admin_api_key)
    for svc in topology.services():
        doc = http.get(f"{p.service_url(svc)}/openapi.json", headers=admin).json()
        for path, ops in doc["paths"].items():
            op = ops.get("post")
            if op is None or op.get("x-arrears-permission") is not None or path == "/login":
                continue
            url = p.service_url(svc) + path + f"?token={CANARY}&from={CANARY_EMAIL}"
            body = {"from": CANARY_EMAIL, "name": CANARY_NAME, "text": CANARY, "message": {"data": CANARY}}
            http.post(url, json=body, headers=CANARY_HEADERS)
            http.post(url, content=f"{CANARY}={CANARY}".encode(), headers=CANARY_HEADERS)


def feed_apis(p: Platform, http: httpx.Client, phone: str) -> int:
    """Every route of every service, as the admin: canary path and query values, and a body made from the
    route's schema with canary strings, then one whose every field is the canary (fails validation)."""
    admin = bearer(p.admin_api_key)
    calls = 0
    for svc in topology.services():
        base = p.service_url(svc)
        doc = http.get(f"{base}/openapi.json", headers=admin).json()
        components = doc.get("components", {}).get("schemas", {})
        for path, ops in doc["paths"].items():
            if path in ("/healthz", "/readyz", "/metrics", "/logout") or "{name}" in path:
                continue
            for method, op in ops.items():
                url = base + re.sub(r"\{\w+\}", CANARY, path)
                params = {q["name"]: CANARY for q in op.get("parameters", []) if q.get("in") == "query"}
                bodies = request_bodies(op, components, phone)
                for body in bodies or [None]:
                    kw: dict[str, Any] = {"params": params, "headers": admin}
                    if isinstance(body, bytes):
                        kw["content"] = body
                    elif body is not None:
                        kw["json"] = body
                    http.request(method, url, **kw)
                    calls += 1
    return calls


def request_bodies(op: dict[str, Any], components: dict[str, Any], phone: str) -> list[Any]:
    content = op.get("requestBody", {}).get("content", {})
    if not content:
        return []
    schema = next(iter(content.values())).get("schema", {})
    if "application/json" not in content:
        return [f"{CANARY}: {CANARY_NAME}\nname: {CANARY}\n".encode()]
    made = example(schema, components, phone, "", 0)
    fields = resolve(schema, components).get("properties", {})
    return [made, {name: CANARY for name in fields} or [CANARY]]


def resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def example(schema: dict[str, Any], components: dict[str, Any], phone: str, name: str, depth: int) -> Any:
    """A value of `schema` whose strings are the canary (an email where one is asked for, the canary phone
    where the field names a phone)."""
    schema = resolve(schema, components)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if resolve(s, components).get("type") != "null"]
            return example(options[0], components, phone, name, depth) if options else None
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if depth > 4:
            return {}
        return {
            k: example(v, components, phone, k, depth + 1) for k, v in schema.get("properties", {}).items()
        }
    if kind == "array":
        return [example(schema.get("items", {}), components, phone, name, depth + 1)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if schema.get("format") == "email" or "email" in name:
        return CANARY_EMAIL
    if "phone" in name or name in ("to", "address"):
        return phone
    return f"{CANARY} {name}".strip()


def _ce_headers(ce_type: str, **overrides: str) -> list[tuple[str, bytes]]:
    h = {
        "ce_specversion": "1.0",
        "ce_id": str(uuid.uuid4()),
        "ce_source": "nopii-test",
        "ce_type": ce_type,
        "content-type": "application/json",
    } | overrides
    return [(k, v.encode()) for k, v in h.items()]


async def feed_malformed_events(p: Platform, phone: str) -> int:
    """On every consumed topic: data of the wrong shape made of the canary, an unknown type named by it,
    a bad `ce_time` and JSON that does not parse. Returns how many DLQ records that must make."""
    producer = AIOKafkaProducer(bootstrap_servers=p.bootstrap_servers)
    await producer.start()
    expected = 0
    try:
        for topic in sorted({t for s in topology.services() for t in topology.service(s).consumes}):
            ce_type = TYPES_BY_TOPIC[topic][0].ce_type
            fields = TYPES_BY_TOPIC[topic][0].model_fields
            wrong = json.dumps(dict.fromkeys(fields, CANARY) | {"phone": phone, "email": CANARY_EMAIL})
            good = account_changed(7).model_copy(update={"customer_name": CANARY_NAME}).model_dump_json()
            records = [
                (_ce_headers(ce_type), wrong.encode()),
                (_ce_headers(CANARY), b"{}"),
                (_ce_headers(ce_type, ce_time=CANARY), good.encode()),
                (_ce_headers(ce_type), f'{{"customer_name": "{CANARY}'.encode()),
            ]
            for headers, value in records:
                await producer.send_and_wait(topic, value, key=b"NOPII-01", headers=headers)
            expected += len(records) * len(topology.consumers_of(topic))
        # valid events whose handling fails on the canary (an unknown time zone, a balance out of range)
        ce_type = TYPES_BY_TOPIC["account-changed"][0].ce_type
        failing: tuple[dict[str, Any], ...] = ({"timezone": f"{CANARY}/Zone"}, {"balance_minor": 10**25})
        for i, update in enumerate(failing):
            event = account_changed(70 + i).model_copy(
                update={"customer_name": CANARY_NAME, "email": CANARY_EMAIL, "phone": phone.replace(" ", "")}
                | update
            )
            value = event.model_dump_json().encode()
            await producer.send_and_wait(
                "account-changed", value, key=b"NOPII-EV", headers=_ce_headers(ce_type)
            )
    finally:
        await producer.stop()
    return expected


async def dlq_headers(p: Platform) -> list[list[tuple[str, bytes]]]:
    topics = sorted({t for s in topology.services() for t in topology.service(s).dead_letter_topics})
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=p.bootstrap_servers, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[list[tuple[str, bytes]]] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1500)
            if not batch:
                return out
            out.extend(list(r.headers) for recs in batch.values() for r in recs)
    finally:
        await consumer.stop()
