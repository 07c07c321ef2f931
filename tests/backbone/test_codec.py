"""CloudEvents binary-mode codec and the published schemas (the AsyncAPI document: test_asyncapi.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import jsonschema
import pytest
from arrears_shared.cloudevents import InvalidEvent, decode, encode
from arrears_shared.events import EVENT_TYPES, AccountChanged, json_schemas
from cloudevents.v1.http import CloudEvent
from cloudevents.v1.kafka import KafkaMessage, from_binary, to_binary

from .factories import account_changed


def test_roundtrip_keeps_every_attribute() -> None:
    ev = account_changed(1)
    t = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    rec = encode(ev, source="ingest", id="fixed-id", time=t)
    assert rec.topic == "account-changed"
    assert rec.key == b"PME-000001"
    env = decode(rec.headers, rec.value)
    assert env.id == "fixed-id"
    assert env.source == "ingest"
    assert env.type == "arrears.account.changed.v1"
    assert env.time == t
    assert env.subject == "PME-000001"
    assert env.data == ev


def test_interoperates_with_the_cloudevents_sdk_both_ways() -> None:
    rec = encode(account_changed(2), source="ingest", id="abc")
    msg = KafkaMessage(headers=dict(rec.headers), key=rec.key, value=rec.value)
    sdk_event = from_binary(msg, data_unmarshaller=lambda b: json.loads(b))
    assert sdk_event["id"] == "abc"
    assert sdk_event["type"] == "arrears.account.changed.v1"
    assert sdk_event["subject"] == "PME-000002"
    assert sdk_event.data["account_id"] == "PME-000002"

    sdk_out = to_binary(
        CloudEvent(
            {
                "id": "from-sdk",
                "source": "other-team",
                "type": "arrears.account.changed.v1",
                "subject": "PME-000002",
                "datacontenttype": "application/json",
            },
            json.loads(rec.value),
        ),
        data_marshaller=lambda d: json.dumps(d).encode(),
    )
    env = decode(list(sdk_out.headers.items()), sdk_out.value)
    assert env.id == "from-sdk" and env.source == "other-team"
    assert isinstance(env.data, AccountChanged)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h, v: ([x for x in h if x[0] != "ce_id"], v), "missing required attribute ce_id"),
        (lambda h, v: ([(k, b"9.9" if k == "ce_specversion" else x) for k, x in h], v), "ce_specversion"),
        (lambda h, v: ([(k, b"nope.v1" if k == "ce_type" else x) for k, x in h], v), "unknown ce_type"),
        (lambda h, v: (h, b"{not json"), "data invalid"),
        (lambda h, v: (h, json.dumps({**json.loads(v), "balance_minor": "lots"}).encode()), "balance_minor"),
        (lambda h, v: (h, None), "no value"),
        (lambda h, v: ([(k, b"\xff\xfe" if k == "ce_source" else x) for k, x in h], v), "not UTF-8"),
    ],
)
def test_invalid_records_name_what_is_wrong(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    rec = encode(account_changed(3), source="ingest")
    headers, value = mutate(list(rec.headers), rec.value)
    with pytest.raises(InvalidEvent, match=reason):
        decode(headers, value)


def test_json_schemas_are_valid_and_accept_real_events() -> None:
    schemas = json_schemas()
    assert set(schemas) == {t.ce_type for t in EVENT_TYPES}
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schemas["arrears.account.changed.v1"])
    validator.validate(json.loads(account_changed(4).model_dump_json()))
    bad = json.loads(account_changed(4).model_dump_json()) | {"currency": "dollars"}
    assert list(validator.iter_errors(bad)), "schema must reject a non-ISO currency"


def test_dead_letter_headers_never_quote_the_record() -> None:
    """Validation errors quote their input; DLQ headers are read by operators and must not carry PII."""
    import pydantic
    from aiokafka.structs import ConsumerRecord
    from arrears_shared.stream.dead_letter import (
        EXCEPTION_MESSAGE,
        EXCEPTION_STACKTRACE,
        Failure,
        dead_letter,
    )

    class Row(pydantic.BaseModel):
        phone: int

    payload = {"phone": " ".join(["+1", "415", "555", "0123", "(Jane", "Doe)"])}  # not quoted by the trace
    try:
        Row.model_validate(payload)
    except pydantic.ValidationError as e:
        error = e
    rec = ConsumerRecord("t", 0, 7, 0, 0, b"k", b"{}", None, 2, 2, [("ce_id", b"x")])
    headers = dict(dead_letter(Failure(rec, error, 1), group="g").headers)
    for name in (EXCEPTION_MESSAGE, EXCEPTION_STACKTRACE):
        text = headers[name].decode()
        assert "Jane Doe" not in text and "555" not in text, text
        assert "input_value=<redacted>" in text
