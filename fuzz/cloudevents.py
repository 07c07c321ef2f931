"""Coverage-guided fuzzing (atheris) of the CloudEvents decoder: binary-mode Kafka records (`ce_*` headers and
a JSON value, personal fields sealed with the account's key) as every consumer reads them.

    .venv/bin/python fuzz/cloudevents.py -max_total_time=60        # a minute
    .venv/bin/python fuzz/cloudevents.py -atheris_runs=100000

Each input becomes a record: each header typical, made of the input, empty (None) or absent; the value
absent, made of the input, or a valid event's JSON (plain or sealed) with a slice of it replaced by input
bytes or with a piece of input repeated in it. `decode` may return an envelope or raise its typed errors, `InvalidEvent` (the record goes to the
dead-letter topic with the reason, never retried) or `Erased` (skipped); any other exception is a crash (the
runner would retry a record that can never decode, then dead-letter it as a handler failure).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime

import atheris

INSTRUMENTED = [
    "arrears_shared.cloudevents",
    "arrears_shared.events",
    "arrears_shared.vault.records",
    "arrears_shared.vault.cipher",
    "arrears_shared.vault.fields",
]

with atheris.instrument_imports(include=INSTRUMENTED):
    from arrears_shared.cloudevents import Erased, InvalidEvent, decode, encode
    from arrears_shared.events import (
        BY_CE_TYPE,
        AccountChanged,
        Event,
        Intent,
        OverrideRequested,
        ReplyReceived,
    )
    from arrears_shared.vault import cipher
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SUBJECT = "PME-000001"
ERASED = "PME-000002"
KEYS: dict[str, AESGCM | None] = {SUBJECT: AESGCM(bytes(range(32))), ERASED: None}
AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TYPES = sorted(BY_CE_TYPE)


def _samples() -> list[Event]:
    return [
        AccountChanged(
            account_id=SUBJECT,
            change="created",
            source="sheet",
            source_row=2,
            customer_name="Ada Lovelace",
            phone="+14155550100",
            email="ada@example.com",
            balance_minor=12_345,
            currency="USD",
            due_date=date(2026, 9, 1),
            timezone="America/Los_Angeles",
            country="US",
            region="CA",
            sms_consent=True,
            email_consent=True,
            contacts={"whatsapp": {"address": "+14155550100", "consent": True}},
            content_hash="h1",
            as_of=AT,
        ),
        ReplyReceived(
            account_id=SUBJECT,
            reply_id="r-1",
            channel="sms",
            from_address="+14155550100",
            text="I will pay on Friday",
            intent=Intent.PROMISE_TO_PAY,
            confidence=0.9,
            promise_date=date(2026, 12, 4),
            received_at=AT,
        ),
        OverrideRequested(
            account_id=SUBJECT,
            override_id="o-1",
            action="snooze",
            until=AT,
            reason="customer asked",
            actor="ada",
            role="collector",
            requested_at=AT,
        ),
    ]


def _values() -> list[tuple[str, str, bytes]]:
    """(ce_type, subject, value): each sample as plain JSON and with its personal fields sealed."""
    out = []
    for event in _samples():
        plain = encode(event, source="fuzz").value
        out.append((event.ce_type, event.account_id, plain))
        data = json.loads(plain)
        aead = KEYS[SUBJECT]
        assert aead is not None
        cipher.seal_fields(aead, SUBJECT, data, event.personal)
        out.append((event.ce_type, SUBJECT, json.dumps(data).encode()))
    return out


VALUES = _values()


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    ce_type, subject, sample = VALUES[fdp.ConsumeIntInRange(0, len(VALUES) - 1)]
    if fdp.ConsumeIntInRange(0, 3) == 0:
        ce_type = TYPES[fdp.ConsumeIntInRange(0, len(TYPES) - 1)]  # a value of another type
    headers: list[tuple[str, bytes | None]] = []

    def header(name: str, typical: str) -> None:
        choice = fdp.ConsumeIntInRange(0, 5)
        if choice <= 2:
            headers.append((name, typical.encode()))
        elif choice == 3:
            headers.append((name, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))))
        elif choice == 4:
            headers.append((name, None))  # Kafka allows a header without a value

    header("ce_specversion", "1.0")
    header("ce_id", "id-1")
    header("ce_source", "fuzz")
    header("ce_type", ce_type)
    header("ce_time", "2026-11-23T12:00:00Z")
    header("ce_subject", subject if fdp.ConsumeBool() else ERASED)
    header("content-type", "application/json")
    header("ce_" + fdp.ConsumeUnicodeNoSurrogates(8), "x")  # an extension attribute
    if fdp.ConsumeBool():  # the order of headers is not fixed on the wire
        headers.reverse()
    mode = fdp.ConsumeIntInRange(0, 5)
    value: bytes | None
    if mode == 0:
        value = None
    elif mode == 1:
        value = fdp.ConsumeBytes(fdp.remaining_bytes())
    elif mode == 2:  # a short piece repeated inside a valid value (deep nesting, long runs)
        at = fdp.ConsumeIntInRange(0, len(sample))
        piece = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 4))
        value = sample[:at] + piece * fdp.ConsumeIntInRange(0, 5000) + sample[at:]
    else:  # a valid value with a slice replaced
        at = fdp.ConsumeIntInRange(0, len(sample))
        cut = fdp.ConsumeIntInRange(0, 16)
        value = sample[:at] + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 32)) + sample[at + cut :]
    try:
        decode(headers, value, KEYS)  # type: ignore[arg-type]  # a header's value may be None on the wire
    except (InvalidEvent, Erased):
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
