"""What the fuzzers found (tests/fuzz/test_api_fuzz.py, fuzz/*.py), each kept with the concrete input that
failed. Fast: the services' apps are built in-process without starting them; the few that need stored data
use the session's PostgreSQL."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from arrears_dispatcher_whatsapp.webhooks import make_router as whatsapp_router
from arrears_escalation.overrides.models import Pause, RecordPromise, SendNow, Snooze
from arrears_escalation.promises.service import add_promise
from arrears_escalation.timeline.service import timeline
from arrears_segmenter.accounts.models import FlagsUpdate
from arrears_segmenter.approvals.service import Verdict
from arrears_segmenter.campaigns.models import CampaignIn
from arrears_shared import topology
from arrears_shared.auth import keys
from arrears_shared.auth.access import public
from arrears_shared.auth.gate import Authenticator
from arrears_shared.auth.views import Rotation
from arrears_shared.cloudevents import InvalidEvent, decode, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.events import Intent, ReplyReceived
from arrears_shared.http import Health, create_app
from arrears_shared.isodate import IsoDate
from arrears_shared.service import ServiceHost
from arrears_shared.settings import ServiceSettings
from arrears_shared.vault.records import SEALED_MARK, seal_records
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel, TypeAdapter, ValidationError

PG_INT_MAX = 2**31 - 1


@pytest.fixture(scope="module")
def apps() -> dict[str, FastAPI]:
    """The API services' apps as they are served (routes, middleware, OpenAPI), not started."""
    out = {}
    for svc in ("ingest", "segmenter", "escalation", "console"):
        module = importlib.import_module(topology.service(svc).package + ".__main__")
        out[svc] = ServiceHost(module.definition()).build_app()
    return out


def operation(app: FastAPI, method: str, path: str) -> dict[str, Any]:
    return dict(app.openapi()["paths"][path][method])


def parameter(app: FastAPI, method: str, path: str, name: str) -> dict[str, Any]:
    return next(p for p in operation(app, method, path)["parameters"] if p["name"] == name)


# -- every service (arrears_shared.http) ----------------------------------------------------------------------


class Body(BaseModel):
    name: str
    criteria: dict[str, Any] = {}


def asgi(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fuzz")


@pytest.fixture(scope="module")
def small_app() -> FastAPI:
    """`create_app` with one public route taking a path, a query and a JSON body, and one reading its raw
    body (as the webhooks and uploads do)."""
    router = APIRouter(dependencies=[Depends(public("fuzz findings"))])

    @router.post("/items/{item_id}")
    async def items(item_id: str, body: Body, q: str = "") -> dict[str, str]:
        return {"item_id": item_id, "name": body.name}

    @router.get("/pages")
    async def pages(
        cursor: str | None = None, tag: list[str] | None = Query(None), limit: int = 10
    ) -> dict[str, Any]:
        return {"cursor": cursor, "tag": tag, "limit": limit}

    @router.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    settings = ServiceSettings(service_name="fuzz-findings")
    return create_app("fuzz-findings", Health(), [router], authenticator=Authenticator(settings))


@pytest.fixture
async def client(small_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi(small_app) as c:
        yield c


async def test_a_single_valued_query_parameter_given_twice_is_refused(client: httpx.AsyncClient) -> None:
    """schemathesis: `GET /next-steps?cursor=a&cursor=b` was answered 200 (FastAPI keeps the last value):
    a schema-violating request accepted. A list parameter may repeat; a single-valued one may not."""
    ok = await client.get("/pages", params=[("cursor", "a"), ("tag", "x"), ("tag", "y")])
    assert ok.status_code == 200 and ok.json() == {"cursor": "a", "tag": ["x", "y"], "limit": 10}
    for name in ("cursor", "limit"):
        r = await client.get("/pages", params=[(name, "1"), (name, "2")])
        assert r.status_code == 422, r.text
        assert [(e["loc"], e["type"]) for e in r.json()["detail"]] == [(["query", name], "repeated")]


async def test_metrics_are_documented_as_the_text_they_are(
    small_app: FastAPI, client: httpx.AsyncClient
) -> None:
    """schemathesis: `/metrics` answered text/plain where its OpenAPI said application/json."""
    assert set(operation(small_app, "get", "/metrics")["responses"]["200"]["content"]) == {"text/plain"}
    assert (await client.get("/metrics")).headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("url", "body", "where"),
    [
        # POST /campaigns answered 500: PostgreSQL refuses NUL in text (CharacterNotInRepertoireError)
        ("/items/c1", '{"name": "\\u0000\\u00f2|24\\u0014"}', ["body", "name"]),
        # GET /tasks?assignee=%00%F1%B5%B8%A0 answered 500 the same way
        ("/items/c1?q=%00%F1%B5%B8%A0", '{"name": "ok"}', ["query", "q"]),
        ("/items/a%00b", '{"name": "ok"}', ["path", "item_id"]),
        # a lone surrogate is not Unicode: it cannot be encoded to be stored or published
        (
            "/items/c1",
            '{"name": "ok", "criteria": {"histories": ["T\\ud9b7"]}}',
            ["body", "criteria", "histories", 0],
        ),
        ("/items/c1", '{"name": "ok", "criteria": {"k\\ud800": 1}}', ["body", "criteria", "k?"]),
    ],
)
async def test_text_that_cannot_be_stored_is_refused_with_422(
    client: httpx.AsyncClient, url: str, body: str, where: list[str | int]
) -> None:
    r = await client.post(url, content=body.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["detail"]] == [where]
    assert r.json()["detail"][0]["type"] == "string_unstorable"


async def test_a_nul_in_a_form_field_is_refused_and_other_bodies_are_left_to_their_parsers(
    client: httpx.AsyncClient,
) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = await client.post("/raw", content=b"api_key=%00", headers=form)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "api_key"]
    csv = await client.post("/raw", content=b"a,b\x00", headers={"content-type": "text/csv"})
    assert csv.json() == {"bytes": 4}
    ok = await client.post("/items/c1", json={"name": "Zoë ✓"})
    assert ok.json() == {"item_id": "c1", "name": "Zoë ✓"}
    deep = b"[" * 100_000 + b"]" * 100_000  # json.loads raises RecursionError, not ValueError
    for url in ("/raw", "/items/c1"):
        r = await client.post(url, content=deep, headers={"content-type": "application/json"})
        assert r.status_code < 500, (url, r.status_code)


def test_422_documents_the_errors_handlers_raise(apps: dict[str, FastAPI]) -> None:
    """schemathesis: POST /policies answered 422 `{"detail": {"message": ..., "errors": [...]}}` and POST
    /accounts/{id}/send-now `{"detail": "a gate override needs a reason"}`; the OpenAPI documented only
    FastAPI's list of validation errors."""
    for svc, method, path in (
        ("segmenter", "post", "/policies"),
        ("escalation", "post", "/accounts/{account_id}/send-now"),
    ):
        doc = apps[svc].openapi()
        schema = operation(apps[svc], method, path)["responses"]["422"]["content"]["application/json"][
            "schema"
        ]
        assert {"$ref": "#/components/schemas/Error"} in schema["anyOf"]
        detail = doc["components"]["schemas"]["Error"]["properties"]["detail"]["anyOf"]
        assert {"type": "string"} in detail and any(d.get("required") == ["message"] for d in detail)


# -- segmenter -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"step": -10093484845, "cycle": -26783},  # int32 overflow in the timers UPDATE: 500
        {"cycle": 214636141321, "note": "\r", "step": -19},
        {"step": PG_INT_MAX + 1, "cycle": 0},
        {"step": True, "cycle": 0},
    ],
)
def test_an_approval_names_a_step_and_cycle_that_can_exist(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Verdict.model_validate(body)
    assert Verdict.model_validate({"step": 1, "cycle": 0}).step == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"priority": 271062844527614887985152},  # int32 out of range inserting the campaign: 500
        {"priority": True},
        {"criteria": {"min_balance_minor": False}},  # read as a bound of 0 (schema-violating body accepted)
    ],
)
def test_a_campaign_takes_integers_that_fit_its_columns(bad: dict[str, Any]) -> None:
    base = {"campaign_id": "KXpxj6Co", "name": "n", "owner": "o"}
    with pytest.raises(ValidationError):
        CampaignIn.model_validate(base | bad)
    ok = CampaignIn.model_validate(base | {"priority": -5, "criteria": {"aging_buckets": ["61-90"]}})
    assert ok.priority == -5 and ok.criteria.aging_buckets == ["61-90"]


@pytest.mark.parametrize(
    "body",
    [
        # `false` was read as a risk score of 0 and pinned it (schemathesis: schema-violating body accepted)
        {"risk_override": False, "clear_risk_override": True, "reason": "", "do_not_contact": None},
        {"do_not_contact": 0.0},
        {"complex": 1},
    ],
)
def test_account_flags_are_not_coerced(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        FlagsUpdate.model_validate(body)
    assert FlagsUpdate.model_validate({"risk_override": 0, "do_not_contact": False}).risk_override == 0


# -- escalation ----------------------------------------------------------------------------------------------


def test_a_step_beyond_the_segmenters_integer_is_refused(apps: dict[str, FastAPI]) -> None:
    """POST /accounts/{id}/steps/{step}/skip with a 12-digit step was accepted; the segmenter then
    dead-lettered the override (NumericValueOutOfRangeError inserting its decision)."""
    for action in ("skip", "approve"):
        step = parameter(
            apps["escalation"], "post", f"/accounts/{{account_id}}/steps/{{step}}/{action}", "step"
        )
        assert (step["schema"]["minimum"], step["schema"]["maximum"]) == (0, PG_INT_MAX)
    for bad in ({"step": PG_INT_MAX + 1}, {"step": False}, {"step": 0, "gate_override": 1, "reason": "r"}):
        with pytest.raises(ValidationError):  # `1` was taken for a request to skip the compliance gate
            SendNow.model_validate(bad)
    assert SendNow.model_validate({"step": 0, "gate_override": True, "reason": "r"}).gate_override


def test_a_pause_until_an_instant_with_any_offset_is_kept_in_utc() -> None:
    """`until` 2030-01-01T00:00:00+23:00 was published as written; the segmenter stores it through JSON and
    PostgreSQL refuses offsets beyond 15:59 (InvalidTimeZoneDisplacementValueError): the override was
    dead-lettered."""
    until = Pause.model_validate({"until": "2030-01-01T00:00:00+23:00"}).until
    assert until == datetime(2029, 12, 31, 1, 0, tzinfo=UTC) and until.utcoffset() == timedelta(0)
    for bad in (-42913, 1.5, True, "0001-01-01T00:00:00+23:00"):  # a number was read as a Unix time
        with pytest.raises(ValidationError):
            Snooze.model_validate({"until": bad})


@pytest.mark.parametrize(
    "bad", ["20240101", "0.0", 0, "2024-02-30", "2024-01-01T00:00:00", "0001-01-01", "9999-12-31"]
)
def test_a_day_is_written_yyyy_mm_dd_and_is_a_plausible_one(bad: object, apps: dict[str, FastAPI]) -> None:
    """GET /api/aging?as_of=0.0 answered the aging of 1970-01-01 (pydantic reads a number as a Unix time);
    as_of=0001-01-01 answered 500 (asyncpg sends date.min as -infinity: "cannot subtract infinite dates"),
    and so did POST /collection-metrics/snapshot?day=0001-01-01 (a week before it: OverflowError)."""
    with pytest.raises(ValidationError):
        TypeAdapter(IsoDate).validate_python(bad)
    with pytest.raises(ValidationError):
        RecordPromise.model_validate({"due_date": bad})
    assert TypeAdapter(IsoDate).validate_python("2024-02-29") == date(2024, 2, 29)
    as_of = parameter(apps["console"], "get", "/api/aging", "as_of")["schema"]["anyOf"][0]
    assert as_of == {"type": "string", "format": "date"}


@pytest.fixture(scope="module")
def escalation_db(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("fuzz_findings")
    upgrade(url, "escalation")
    return url


async def test_a_large_promise_does_not_break_the_accounts_timeline(escalation_db: str) -> None:
    """After a promise of 2**53 minor units, GET /accounts/{id}/timeline answered 500 for good
    (`numeric(14, 2)` overflow formatting the amount)."""
    engine = make_engine(escalation_db)
    try:
        async with engine.begin() as conn:
            for i, amount in enumerate((2**53, 1250)):
                await add_promise(
                    conn,
                    promise_id=f"p-{i}",
                    account_id="FUZZ-02",
                    amount_minor=amount,
                    due_date=date(2026, 12, 24),
                    made_at=datetime(2026, 12, 1, 12, i, tzinfo=UTC),
                    channel=None,
                    collector="fuzz",
                )
            items, _ = await timeline(conn, "FUZZ-02")
    finally:
        await engine.dispose()
    assert [i.summary for i in items if i.kind == "promise.made"] == [
        "promise to pay by 2026-12-24: 90,071,992,547,409.92",
        "promise to pay by 2026-12-24: 12.50",
    ]
    for amount in (2**63, False):  # `false` was a promise of 0
        with pytest.raises(ValidationError):
            RecordPromise.model_validate({"due_date": "2026-12-24", "amount_minor": amount})


# -- ingest ----------------------------------------------------------------------------------------------------


def test_a_rejects_offset_fits_postgresqls_bigint(apps: dict[str, FastAPI]) -> None:
    """GET /ingest/rejects?offset=2039149248369066745711936697008128 answered 500 (int64 out of range)."""
    offset = parameter(apps["ingest"], "get", "/ingest/rejects", "offset")["schema"]
    assert offset["maximum"] == 2**63 - 1


# -- console and webhooks ------------------------------------------------------------------------------------


async def test_console_errors_are_json_or_documented_pages(apps: dict[str, FastAPI]) -> None:
    """GET /static/0 answered 404 with an empty body; /auth/login and /auth/callback answered HTML where
    their OpenAPI said JSON."""
    console = apps["console"]
    for path in ("/auth/login", "/auth/callback", "/login"):
        assert "text/html" in operation(console, "get", path)["responses"]["200"]["content"]
    async with asgi(console) as c:
        r = await c.get("/static/0")  # public: the gate lets it through without a credential
        assert (r.status_code, r.json()) == (404, {"detail": "Not Found"})
        assert (await c.get("/static/app.css")).status_code == 200


async def test_a_failed_whatsapp_subscription_handshake_answers_json() -> None:
    """GET /webhooks/whatsapp without the handshake's parameters answered 403 in text/plain."""

    async def ignore(_: object) -> None:
        return None

    app = FastAPI()
    app.include_router(whatsapp_router(ignore, ignore, "app-secret", "verify-token"))
    async with asgi(app) as c:
        r = await c.get("/webhooks/whatsapp")
        assert (r.status_code, r.json()) == (403, {"detail": "verification failed"})
        ok = {"hub.mode": "subscribe", "hub.verify_token": "verify-token", "hub.challenge": "42"}
        assert (await c.get("/webhooks/whatsapp", params=ok)).text == "42"


# -- API keys ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iam_db(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("fuzz_findings_iam")
    upgrade(url, "iam")
    return url


async def test_a_taken_key_name_is_a_typed_refusal(iam_db: str) -> None:
    """POST /admin/api-keys {"name": "0", "roles": ["admin"]} a second time answered 500 (unique violation):
    now `KeyNameTaken` (409). Rotating a key still in its grace period (renamed `name~id`) raised the name
    check's ValueError (500): its successor holds the name, so it is `KeyNameTaken` too."""

    engine = make_engine(iam_db)
    try:
        async with engine.begin() as conn:
            first, _ = await keys.create(conn, name="0", roles=("admin",), created_by="fuzz")
            with pytest.raises(keys.KeyNameTaken):
                await keys.create(conn, name="0", roles=("viewer",), created_by="fuzz")
            rotated = await keys.rotate(conn, first.key_id, rotated_by="fuzz", grace=timedelta(hours=1))
            assert rotated is not None and rotated[0].name == "0"
            with pytest.raises(keys.KeyNameTaken):  # the old key, in its grace period, again
                await keys.rotate(conn, first.key_id, rotated_by="fuzz")
            await keys.revoke(conn, rotated[0].key_id)
            again, _ = await keys.create(conn, name="0", roles=("admin",), created_by="fuzz")
            assert again.name == "0"
    finally:
        await engine.dispose()
    with pytest.raises(ValidationError):  # `true` is not a grace period of 1 s
        Rotation.model_validate({"grace_s": True})


# -- the CloudEvents decoder (fuzz/cloudevents.py) --------------------------------------------------------------

SUBJECT = "PME-000001"
AEAD = AESGCM(bytes(range(32)))


def _reply() -> ReplyReceived:
    return ReplyReceived(
        account_id=SUBJECT,
        reply_id="r-1",
        channel="sms",
        from_address="+14155550100",
        text="hi",
        intent=Intent.OTHER,
        confidence=0.5,
        received_at=datetime(2026, 11, 23, tzinfo=UTC),
    )


# the crash: sealed data (it holds `"pii1:`) nested deeper than json.loads goes -> RecursionError
DEEP_SEALED = b"[" * 100_000 + SEALED_MARK + b'x"' + b"]" * 100_000


def test_sealed_data_nested_too_deeply_is_an_invalid_event() -> None:
    headers = encode(_reply(), source="fuzz").headers
    with pytest.raises(InvalidEvent, match="nested too deeply"):
        decode(headers, DEEP_SEALED, {SUBJECT: AEAD})
    with pytest.raises(InvalidEvent):  # the same depth unsealed: pydantic's parser refuses it itself
        decode(headers, b"[" * 100_000 + b"]" * 100_000, {SUBJECT: AEAD})


async def test_a_dead_letter_of_such_a_record_is_kept_byte_for_byte() -> None:
    """The dead letter of that record passes `seal_records` on its way to the outbox, which parsed it too."""
    record = encode(_reply(), source="fuzz")
    dead = type(record)(record.topic, record.key, DEEP_SEALED, record.headers)
    out = await seal_records(None, [dead])  # type: ignore[arg-type]  # nothing to seal: no connection
    assert out[0].value == DEEP_SEALED
