"""Coverage-guided fuzzing (atheris) of every webhook signature-header parser of the public paths.

    .venv/bin/python fuzz/headers.py -max_total_time=60        # all parsers, a minute
    .venv/bin/python fuzz/headers.py -atheris_runs=100000

Each input is split into header values and a body; a parser may verify or raise its typed error
(`InvalidSignature`, `WebhookRejected`, `PushRejected`, or return False) — any other exception is a crash
(the route would answer 500). Needs `atheris` (`uv pip install atheris`; it builds against libFuzzer).
"""

from __future__ import annotations

import base64
import sys
import time

import atheris

INSTRUMENTED = [
    "arrears_shared.providers",
    "arrears_responses.webhooks.signatures",
    "arrears_responses.gmail.push_auth",
    "arrears_ingest.payments.signatures",
    "arrears_dispatcher_whatsapp.webhooks",
    "standardwebhooks",
    "stripe._webhook",
]

with atheris.instrument_imports(include=INSTRUMENTED):
    from arrears_dispatcher_whatsapp.webhooks import verify_signature
    from arrears_ingest.payments.signatures import verify_stripe
    from arrears_responses.gmail.push_auth import PushRejected, bearer_token
    from arrears_responses.settings import ResponsesSettings
    from arrears_responses.webhooks.signatures import WebhookRejected, verify_quo_webhook
    from arrears_shared.providers.quo_signature import InvalidSignature, verify_openphone_signature
    from arrears_shared.providers.standard_webhooks import verify_standard_webhook

KEY = base64.b64encode(b"fuzz-signing-key-0123456789abcdef").decode()
WHSEC = "whsec_" + base64.b64encode(b"fuzz-standard-webhooks-secret-01").decode()
SETTINGS = ResponsesSettings(quo_webhook_secret=WHSEC, quo_webhook_signing_key=KEY)
NOW = time.time()


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    # header values as Starlette gives them (latin-1 decoded bytes) or as any str
    latin1 = fdp.ConsumeBool()

    def value() -> str:
        n = fdp.ConsumeIntInRange(0, 300)
        return fdp.ConsumeBytes(n).decode("latin-1") if latin1 else fdp.ConsumeUnicodeNoSurrogates(n)

    a, b, c = value(), value(), value()
    body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200))
    try:
        verify_openphone_signature({"openphone-signature": a}, body, KEY, now=NOW)
    except InvalidSignature:
        pass
    headers = {"webhook-id": a, "webhook-timestamp": b, "webhook-signature": c}
    try:
        verify_standard_webhook(body, headers, WHSEC, now=NOW)
    except InvalidSignature:
        pass
    try:
        verify_quo_webhook(headers, body, SETTINGS, now=NOW)
    except WebhookRejected:
        pass
    try:
        verify_stripe(body, a, "whsec_fuzz", 300)
    except InvalidSignature:
        pass
    verify_signature("app-secret", body, b)
    try:
        bearer_token(c)
    except PushRejected:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
