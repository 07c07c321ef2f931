"""CloudEvents 1.0 Kafka protocol binding, binary content mode.

Attributes travel as `ce_*` headers, the data (JSON of the pydantic model) is the record value, the key is
the account id. Written here rather than taken from the `cloudevents` SDK because it sits on the hot path
(tens of thousands of records/s) and works directly with our pydantic models; the tests check it against the
SDK's own Kafka binding so the two stay interoperable.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import ValidationError

from .events import BY_CE_TYPE, Event, utcnow
from .vault import cipher
from .vault.records import SEALED_MARK, Erased, NoKey, open_data

__all__ = ["Erased"]  # raised by decode, re-exported for its callers

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"

Headers = list[tuple[str, bytes]]


class InvalidEvent(Exception):
    """The record is not a valid CloudEvent of a known type (goes straight to the DLQ, never retried)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded event with its CloudEvents context attributes."""

    id: str
    source: str
    type: str
    time: datetime
    subject: str
    data: Event
    extensions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    topic: str
    key: bytes
    value: bytes
    headers: Headers


def encode(
    event: Event, *, source: str, id: str | None = None, time: datetime | None = None
) -> OutgoingRecord:
    """Encode `event` as a binary-mode CloudEvent record for its topic. `id` defaults to a new UUID; pass a
    deterministic id where a retry or replay must produce the same event."""
    return record(
        event.ce_type,
        event.topic,
        event.key,
        event.account_id,
        event.model_dump_json().encode(),
        source=source,
        id=id,
        time=time,
    )


def record(
    ce_type: str,
    topic: str,
    key: str,
    subject: str,
    value: bytes,
    *,
    source: str,
    id: str | None = None,
    time: datetime | None = None,
) -> OutgoingRecord:
    """`encode` for data already serialised (`value`: the JSON of an event of type `ce_type`), for producers
    that serialise many events of one type faster than one pydantic model at a time."""
    t = time or utcnow()
    headers: Headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", (id or str(uuid.uuid4())).encode()),
        ("ce_source", source.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_time", _rfc3339(t)),
        ("ce_subject", subject.encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    return OutgoingRecord(topic, key.encode(), value, headers)


@functools.lru_cache(maxsize=256)
def _rfc3339(t: datetime) -> bytes:
    return t.isoformat().replace("+00:00", "Z").encode()


def header_map(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers or ():
        try:
            out[k] = v.decode() if v is not None else ""
        except UnicodeDecodeError as e:
            raise InvalidEvent(f"header {k!r} is not UTF-8") from e
    return out


def decode(
    headers: Sequence[tuple[str, bytes]] | None,
    value: bytes | None,
    keys: Mapping[str, AESGCM | None] | None = None,
) -> Envelope:
    """Decode one record, opening its sealed personal fields with `keys` (subject -> data key; see
    vault/records.py). Raises `InvalidEvent` naming what is wrong (missing attribute, unknown type, data that
    does not match the type's schema, sealed for a subject without a key) and `Erased` for a record of an
    erased account."""
    h = header_map(headers)
    if h.get("ce_specversion") != SPECVERSION:
        raise InvalidEvent(f"ce_specversion is {h.get('ce_specversion')!r}, expected '1.0'")
    for attr in ("ce_id", "ce_source", "ce_type"):
        if not h.get(attr):
            raise InvalidEvent(f"missing required attribute {attr}")
    ce_type = h["ce_type"]
    model = BY_CE_TYPE.get(ce_type)
    if model is None:
        raise InvalidEvent(f"unknown ce_type {ce_type!r}")
    ctype = h.get("content-type", CONTENT_TYPE)
    if not ctype.startswith(CONTENT_TYPE):
        raise InvalidEvent(f"unsupported content-type {ctype!r}")
    if value is None:
        raise InvalidEvent("record has no value")
    try:
        if model.personal and SEALED_MARK in value:
            subject = h.get("ce_subject", "")
            data = model.model_validate(open_data(model, subject, value, keys if keys is not None else {}))
        else:
            data = model.model_validate_json(value)
    except (NoKey, cipher.Unreadable) as e:
        raise InvalidEvent(f"{ce_type} personal data unreadable: {e}") from e
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidEvent(f"{ce_type} data invalid at {loc or '<root>'}: {first.get('msg')}") from e
    except ValueError as e:  # sealed data that is not JSON (json.loads)
        raise InvalidEvent(f"{ce_type} data is not JSON") from e
    except RecursionError as e:  # sealed data nested deeper than json.loads goes (pydantic's parser says so)
        raise InvalidEvent(f"{ce_type} data is nested too deeply") from e
    try:
        time = datetime.fromisoformat(h["ce_time"]) if h.get("ce_time") else utcnow()
    except ValueError as e:
        raise InvalidEvent(f"ce_time {h.get('ce_time')!r} is not RFC 3339") from e
    ext = {k[3:]: v for k, v in h.items() if k.startswith("ce_") and k[3:] not in _CORE}
    return Envelope(
        h["ce_id"], h["ce_source"], ce_type, time, h.get("ce_subject", data.account_id), data, ext
    )


_CORE = {"specversion", "id", "source", "type", "time", "subject", "datacontenttype", "dataschema"}
