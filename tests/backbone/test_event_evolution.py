"""The evolution rule of the event contracts (docs/upgrades.md): within a `.vN` type producers may add
optional fields and consumers ignore fields they do not know. Models, JSON Schemas and decoder agree, and
what is still wrong (a missing required field, a wrong type) is still refused with the reason."""

from __future__ import annotations

import json
import typing
from typing import Any

import jsonschema
import pytest
from arrears_shared.cloudevents import InvalidEvent, decode, encode
from arrears_shared.events import EVENT_TYPES, AccountChanged, Event, json_schemas
from pydantic import BaseModel

from .factories import account_changed


def _models(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """`root` and every model its fields use (nested, in lists and dicts), by name."""
    found: dict[str, type[BaseModel]] = {}

    def visit(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp.__name__ not in found:
                found[tp.__name__] = tp
                for f in tp.model_fields.values():
                    visit(f.annotation)
            return
        for arg in typing.get_args(tp):
            visit(arg)

    visit(root)
    return found


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.ce_type)
def test_schemas_allow_additional_properties_exactly_where_the_models_ignore_them(
    event_type: type[Event],
) -> None:
    schema = json_schemas()[event_type.ce_type]
    objects = {event_type.__name__: schema, **schema.get("$defs", {})}
    models = _models(event_type)
    assert set(models) <= set(objects)
    for name, model in models.items():
        extra = model.model_config.get("extra")
        assert extra == "ignore", f"{name}: consumers must ignore unknown fields, not {extra!r}"
        assert model.model_config.get("frozen") is True, name
        assert objects[name].get("additionalProperties") is True, f"{name}: schema must allow new fields"


def test_an_event_with_unknown_fields_decodes_and_the_fields_are_not_passed_on() -> None:
    rec = encode(account_changed(1), source="ingest", id="e-1")
    data = json.loads(rec.value)
    data["preferred_language"] = "es-MX"  # added by a newer producer, top level
    data["contacts"] = {"sms": {"address": "+14155550100", "consent": True, "verified_at": "2026-01-01"}}
    env = decode(rec.headers, json.dumps(data).encode())
    assert isinstance(env.data, AccountChanged)
    assert env.data.contact_points()["sms"].consent is True
    again = json.loads(env.data.model_dump_json())
    assert "preferred_language" not in again and "verified_at" not in again["contacts"]["sms"]
    schema = json_schemas()[AccountChanged.ce_type]
    jsonschema.Draft202012Validator(schema).validate(data)  # what subscribers validate against, too


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.pop("balance_minor"), "balance_minor: Field required"),
        (lambda d: d.update(balance_minor="lots"), "balance_minor"),
        (lambda d: d.update(currency="dollars"), "currency"),
        (lambda d: d.update(change="merged"), "change"),  # a new enum value is not an additive change
        (lambda d: d.update(contacts={"sms": {"consent": "maybe"}}), "contacts.sms.consent"),
    ],
)
def test_missing_required_fields_and_wrong_types_are_still_refused(change, reason: str) -> None:  # type: ignore[no-untyped-def]
    rec = encode(account_changed(2), source="ingest", id="e-2")
    data = json.loads(rec.value) | {"unknown_but_harmless": 1}
    change(data)
    with pytest.raises(InvalidEvent, match=reason):
        decode(rec.headers, json.dumps(data).encode())
    schema = json_schemas()[AccountChanged.ce_type]
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(data)), "the schema must refuse it too"
