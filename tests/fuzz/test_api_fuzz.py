"""Property-based fuzzing of every service's API from its own OpenAPI document (schemathesis).

The whole platform runs as processes on the embedded broker and PostgreSQL (`e2e.support.running_platform`),
with a few real accounts loaded from the sheet. For every service, each operation is called by every role that
may call it (`x-arrears-roles` of the operation, with a key of that role) and each public operation (webhooks,
probes, sign-in) without a credential. Requests are generated from the operation's schema, valid ones and
invalid ones (schemathesis' positive and negative modes); path parameters named `account_id` are also drawn
from the loaded accounts so that calls reach past the 404.

Each answer is checked:
- never a 5xx;
- a 4xx has a well-formed error body: JSON `{"detail": ...}` (a non-empty message, FastAPI's list of
  validation errors, or an object with a `message`), or what the operation documents for that status (HTML
  for the sign-in pages);
- schemathesis' conformance checks: the body matches the documented response schema, the content type and
  headers are the documented ones, and data that violates the schema is rejected (`negative_data_rejection`).

The default run is bounded and repeatable: `ARREARS_FUZZ_EXAMPLES` examples per operation and role (default
5: the APIs have grown to hundreds of operation x role pairs, and 10 each took five minutes of the default
run), drawn from the fixed seed `ARREARS_FUZZ_SEED` (default 0).
`make fuzz-api` runs many more from a new seed (`ARREARS_FUZZ_SEED=random`); a failure names its seed and a
curl command that repeats the request.

Public webhooks read their bodies raw, so their OpenAPI documents none: the run gives each public POST an
any-JSON body, and the two payment webhooks (configured with secrets here) a body shaped like a payment
event, signed as the provider would sign it, so that calls get past the signature check into the payment
handling (their answers are checked the same way, except for `negative_data_rejection`: the body schema is
the test's, not the API's).

Credentials: one key per role issued for the run. Schemathesis neither generates nor negates credentials
(the security schemes are removed from the document it reads): a wrong key would count as a guess and the
gate would soon refuse this address. Key management never gets the ids or names of the run's own keys, and
the sign-in form is fuzzed last (its failed attempts block the address at the console).
"""

from __future__ import annotations

import base64
import json
import os
import random
import time
import traceback
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import requests
import schemathesis
from arrears_cli.demo_sheet import load_into_emulator
from arrears_cli.stack.platform import SPREADSHEET_ID, Platform
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_shared import topology
from arrears_shared.auth.roles import ROLES
from auth_support import bearer, issue_key
from e2e.support import running_platform
from e2e.test_loop import Account, ingest_sheet, pick_locale, sheet_rows, wait_for
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyFailure
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
)
from standardwebhooks.webhooks import Webhook
from stripe import WebhookSignature

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

EXAMPLES = int(os.environ.get("ARREARS_FUZZ_EXAMPLES", "5"))
_SEED = os.environ.get("ARREARS_FUZZ_SEED", "0")
SEED = random.randrange(2**32) if _SEED == "random" else int(_SEED)
ANONYMOUS = "anonymous"  # public operations, called without a credential
ACCOUNTS = [f"FUZZ-{i:02d}" for i in range(1, 4)]
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
    negative_data_rejection,
]


STRIPE_SECRET = "whsec_fuzz0123456789abcdef0123456789"
GENERIC_SECRET = "whsec_" + base64.b64encode(b"fuzz-generic-payments-webhook-32").decode()
WEBHOOK_SECRETS = {
    "ARREARS_PAYMENTS_STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
    "ARREARS_PAYMENTS_WEBHOOK_SECRET": GENERIC_SECRET,
}
_TEXT = {"type": "string"}
_INSTANT = {"type": "string", "format": "date-time"}
_ACCOUNT = {"enum": [*ACCOUNTS, "NO-SUCH-ACCOUNT"]}
# what the test documents for the bodies the webhooks read raw
WEBHOOK_BODIES: dict[str, dict[str, Any]] = {
    "/ingest/payments/webhook": {
        "type": "object",
        "required": ["type", "data"],
        "properties": {
            "type": {"enum": ["payment.succeeded", "payment.failed", "invoice.paid"]},
            "timestamp": _INSTANT,
            "data": {
                "type": "object",
                "required": ["payment_id", "account_id"],
                "properties": {
                    "payment_id": _TEXT,
                    "account_id": _ACCOUNT,
                    "amount_minor": {"type": "integer"},
                    "amount": _TEXT,
                    "currency": _TEXT,
                    "paid_at": _INSTANT,
                    "failed_at": _INSTANT,
                    "failure_code": _TEXT,
                    "failure_message": _TEXT,
                },
            },
        },
    },
    "/ingest/payments/stripe": {
        "type": "object",
        "required": ["id", "type", "data"],
        "properties": {
            "id": _TEXT,
            "type": {
                "enum": [
                    "payment_intent.succeeded",
                    "charge.succeeded",
                    "checkout.session.completed",
                    "payment_intent.payment_failed",
                    "charge.failed",
                    "customer.created",
                ]
            },
            "created": {"type": "integer"},
            "data": {
                "type": "object",
                "required": ["object"],
                "properties": {
                    "object": {
                        "type": "object",
                        "properties": {
                            "id": _TEXT,
                            "amount": {"type": "integer"},
                            "amount_received": {"type": "integer"},
                            "amount_total": {"type": "integer"},
                            "currency": _TEXT,
                            "payment_status": {"enum": ["paid", "unpaid"]},
                            "client_reference_id": _ACCOUNT,
                            "metadata": {"type": "object", "properties": {"account_id": _ACCOUNT}},
                            "last_payment_error": {"type": "object", "properties": {"code": _TEXT}},
                        },
                    }
                },
            },
        },
    },
}


def sign(path: str, body: bytes) -> dict[str, str]:
    """The headers the provider of the webhook at `path` signs `body` with (none for other routes, or for a
    body that is not UTF-8, which the providers' libraries cannot sign)."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return {}
    if path == "/ingest/payments/stripe":
        return {"Stripe-Signature": WebhookSignature.generate_signature_header(text, STRIPE_SECRET)}
    if path == "/ingest/payments/webhook":
        msg_id, now = f"msg_{random.getrandbits(64):x}", datetime.now(UTC)
        signature = Webhook(GENERIC_SECRET).sign(msg_id, now, text)
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
    return {}


class Credentials:
    """One key per role, issued for this run; their ids and names are never offered to the key-management
    operations (revoking or rotating the key the fuzzer is using would turn the rest of the run into 401s)."""

    def __init__(self, p: Platform) -> None:
        self.keys: dict[str, str] = {}
        self.protected: set[str] = {"admin"}  # the stack's first admin key is named `admin`
        for role in ROLES:
            name = f"fuzz-{role}"
            key = issue_key(p.database_url, role, name=name, migrate=False)
            self.keys[role] = key
            self.protected |= {name, key.split("_")[1]}
        self.protected.add(p.admin_api_key.split("_")[1])

    def headers(self, role: str) -> dict[str, str]:
        return {} if role == ANONYMOUS else bearer(self.keys[role])


@pytest.fixture(scope="module")
def platform(pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(pg, tmp_path_factory, "fuzz-api", {"ingest": WEBHOOK_SECRETS}) as p:
        wait_ready(p)
        load_accounts(p)
        yield p


@pytest.fixture(scope="module")
def credentials(platform: Platform) -> Credentials:
    return Credentials(platform)


def wait_ready(p: Platform) -> None:
    """`Platform.start` returns once `/healthz` answers; the APIs answer 503 until each service started."""
    for svc in topology.services():
        url = p.service_url(svc) + "/readyz"
        wait_for(f"{svc} ready", partial(ready, url), timeout=90)


def ready(url: str) -> bool:
    return httpx.get(url, timeout=5).status_code == 200


def load_accounts(p: Platform) -> None:
    loc = pick_locale(datetime.now(UTC))
    today = datetime.now(ZoneInfo(loc.zone)).date()
    accounts = [
        Account(aid, loc.phone(40 + i), f"fuzz{i}@example.com", 10 * i) for i, aid in enumerate(ACCOUNTS)
    ]
    load_into_emulator(p.emulator_url("sheets"), SPREADSHEET_ID, sheet_rows(accounts, loc, today, []))
    run = ingest_sheet(p)
    assert run["accepted"] == len(ACCOUNTS), run


# -- what a well-formed error is ------------------------------------------------------------------------------


def content_type(response: schemathesis.Response) -> str:
    for name, values in response.headers.items():
        if name.lower() == "content-type" and values:
            return values[0]
    return ""


def error_body_problem(response: schemathesis.Response, documented: set[str]) -> str | None:
    """Why this 4xx answer's body is not the platform's error shape (None: it is)."""
    ctype = content_type(response)
    if ctype.startswith("text/html"):
        return None if "text/html" in documented else f"an HTML error body ({ctype})"
    if not ctype.startswith("application/json"):
        return f"an error body of type {ctype!r}, not JSON"
    try:
        body = response.json()
    except ValueError:
        return f"an error body that is not JSON: {response.text[:200]!r}"
    if not isinstance(body, dict):
        return f"an error body that is not an object: {response.text[:200]!r}"
    if "detail" not in body:
        # the operation may document its own body for this status (an upload's failed run summary)
        if "application/json" in documented:
            return None
        return f"an error body without `detail`: {response.text[:200]!r}"
    detail = body["detail"]
    if isinstance(detail, str):
        return None if detail.strip() else "an empty `detail`"
    if isinstance(detail, list):
        for item in detail:
            ok = (
                isinstance(item, dict)
                and isinstance(item.get("loc"), list)
                and isinstance(item.get("msg"), str)
                and isinstance(item.get("type"), str)
            )
            if not ok:
                return f"a validation error that is not {{loc, msg, type}}: {item!r:.200}"
        return None if detail else "an empty list of validation errors"
    if isinstance(detail, dict):
        return (
            None
            if isinstance(detail.get("message"), str)
            else f"a `detail` object without `message`: {detail!r:.200}"
        )
    return f"a `detail` of type {type(detail).__name__}"


def documented_types(operation: schemathesis.APIOperation, status: int) -> set[str]:
    """The media types the operation documents for `status` (or its `4XX` / `default` answer), and
    `text/html` when it serves a page for a browser (its errors are pages too)."""
    responses = operation.definition.raw.get("responses", {})
    types = set()
    for key in (str(status), f"{str(status)[0]}XX", "default"):
        if key in responses:
            types |= set(responses[key].get("content", {}))
            break
    if any("text/html" in r.get("content", {}) for r in responses.values()):
        types.add("text/html")
    return types


# -- the run --------------------------------------------------------------------------------------------------


def fuzz_operation(
    svc: str,
    base: str,
    operation: schemathesis.APIOperation,
    role: str,
    credentials: Credentials,
    session: requests.Session,
    strategy: st.SearchStrategy[schemathesis.Case],
) -> tuple[int, list[str]]:
    """Run `EXAMPLES` generated calls of one operation as `role`; returns (calls made, problems found)."""
    problems: list[str] = []
    calls = 0
    headers = credentials.headers(role)
    documented_here = bool(operation.definition.raw.get("x-fuzz-body"))  # a body the test documents

    def check(case: schemathesis.Case) -> None:
        nonlocal calls
        key_id = (case.path_parameters or {}).get("key_id")
        if isinstance(key_id, str) and key_id in credentials.protected:
            return
        if operation.path in WEBHOOK_BODIES:  # signed over the exact bytes sent
            kw = case.as_transport_kwargs(base_url=base, headers=headers)
            data = kw.pop("data", None)
            body = json.dumps(kw.pop("json")).encode() if "json" in kw else data or b""
            body = body.encode() if isinstance(body, str) else body
            kw["headers"] = {"Content-Type": "application/json", **kw.get("headers", {})}
            kw["headers"].update(sign(operation.path, body))
            raw = session.request(**kw, data=body, timeout=30, allow_redirects=False)
            response = schemathesis.Response.from_requests(raw, verify=True)
        else:
            response = case.call(
                base_url=base, session=session, headers=headers, timeout=30, allow_redirects=False
            )
        calls += 1
        found: list[str] = []
        if response.status_code >= 500:
            found.append(f"answered {response.status_code}")
        elif 400 <= response.status_code < 500:
            problem = error_body_problem(response, documented_types(operation, response.status_code))
            if problem:
                found.append(f"answered {response.status_code} with {problem}")
        checks = [c for c in CHECKS if c is not negative_data_rejection or not documented_here]
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except FailureGroup as group:
            found += [f"{f.title}: {f.message}"[:600] for f in group.exceptions]
        if found:
            curl = case.as_curl_command(headers=redacted(headers), base_url=base)
            shown = response.text[:300]
            raise AssertionError("\n    ".join(found) + f"\n    body: {shown!r}\n    reproduce: {curl}")

    run = given(case=strategy)(check)
    run = settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: every example is a real request
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )(run)
    label = f"{svc} {operation.method.upper()} {operation.path} as {role}"
    run = seed(SEED ^ zlib.crc32(label.encode()))(run)  # each its own stream, the same in every run
    try:
        run()
    except AssertionError as e:  # a failing example, reported with the others at the end of the test
        problems.append(f"{label}:\n    {e}")
    except (
        FlakyFailure
    ) as e:  # failed, then passed when hypothesis replayed it (the first call changed state)
        first = next((x for x in e.exceptions if isinstance(x, AssertionError)), e)
        problems.append(f"{label}:\n    {first}")
    except Exception:  # the harness itself failed
        problems.append(f"{label}:\n{traceback.format_exc()}")
    return calls, problems


def redacted(headers: dict[str, str]) -> dict[str, str]:
    return {k: "Bearer <key>" if k.lower() == "authorization" else v for k, v in headers.items()}


def strategy_for(
    operation: schemathesis.APIOperation, accounts: list[str]
) -> st.SearchStrategy[schemathesis.Case]:
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    options: list[st.SearchStrategy[schemathesis.Case]] = [operation.as_strategy(m) for m in modes]
    params = {p.name for p in operation.path_parameters}
    if "account_id" in params:  # a real account too, so the call gets past the 404 into the handler
        for mode in modes:
            of_account = partial(_of_account, operation, mode)
            options.append(st.sampled_from(accounts).flatmap(of_account))
    return st.one_of(options)


def _of_account(
    operation: schemathesis.APIOperation, mode: GenerationMode, account_id: str
) -> st.SearchStrategy[schemathesis.Case]:
    return operation.as_strategy(mode, path_parameters={"account_id": account_id})


def roles_for(op: dict[str, Any]) -> list[str]:
    if op.get("x-arrears-permission") is None:
        return [ANONYMOUS]
    return [r for r in op.get("x-arrears-roles", []) if r in ROLES]


def load_schema(p: Platform, svc: str, credentials: Credentials) -> schemathesis.BaseSchema:
    r = httpx.get(p.service_url(svc) + "/openapi.json", headers=credentials.headers("viewer"), timeout=10)
    r.raise_for_status()
    doc = r.json()
    # the credential is the run's (a valid key of the role): schemathesis must not generate or negate one
    doc.get("components", {}).pop("securitySchemes", None)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            op.pop("security", None)
            if method == "post" and op.get("x-arrears-permission") is None and "requestBody" not in op:
                schema = WEBHOOK_BODIES.get(path, {})  # the webhooks read their bodies raw
                op["requestBody"] = {"content": {"application/json": {"schema": schema}}}
                op["x-fuzz-body"] = True
    return schemathesis.openapi.from_dict(doc)


@pytest.mark.parametrize("svc", topology.services())
def test_every_operation_as_every_role_answers_no_5xx_and_well_formed_errors(
    platform: Platform, credentials: Credentials, svc: str
) -> None:
    base = platform.service_url(svc)
    schema = load_schema(platform, svc, credentials)
    problems: list[str] = []
    calls = 0
    runs: list[tuple[str, schemathesis.APIOperation]] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        for role in roles_for(operation.definition.raw):
            runs.append((role, operation))
    assert runs, f"{svc} documents no operation"
    # the sign-in form last: its failed attempts count against this address, then every key is refused (429)
    runs.sort(key=lambda r: r[1].path == "/login")
    started = time.monotonic()
    with requests.Session() as session:
        for role, operation in runs:
            n, found = fuzz_operation(
                svc, base, operation, role, credentials, session, strategy_for(operation, ACCOUNTS)
            )
            calls += n
            problems += found
    print(f"{svc}: {len(runs)} operation x role runs, {calls} calls in {time.monotonic() - started:.1f}s")
    assert calls >= len(runs), f"{svc}: too few calls were made ({calls})"
    head = f"{len(problems)} problem(s) in {svc} (ARREARS_FUZZ_SEED={SEED}, {EXAMPLES} examples):\n"
    assert not problems, head + "\n".join(problems)
