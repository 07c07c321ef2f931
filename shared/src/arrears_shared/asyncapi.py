"""AsyncAPI 3.0 document for every Arrears topic, generated from the pydantic event models.

Published with the project (`arrears schemas export DIR`, `docs/schemas/`) so downstream teams can
subscribe without reading our code.
"""

from __future__ import annotations

from typing import Any

from . import topology
from .events import EVENT_TYPES, json_schemas


def _ce_headers_schema(ce_type: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject"],
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": {"type": "string", "description": "Unique, stable across retries and replays"},
            "ce_source": {"type": "string", "description": "Producing service"},
            "ce_type": {"type": "string", "const": ce_type},
            "ce_time": {"type": "string", "format": "date-time"},
            "ce_subject": {"type": "string", "description": "Account id (also the Kafka key)"},
            "content-type": {"type": "string", "const": "application/json"},
        },
    }


def document(version: str = "0.1.0") -> dict[str, Any]:
    schemas = json_schemas()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    components_schemas: dict[str, Any] = {}
    for t in EVENT_TYPES:
        name = t.__name__
        schema = dict(schemas[t.ce_type])
        defs = schema.pop("$defs", {})
        components_schemas.update(defs)
        components_schemas[name] = _rewrite_refs(schema)
        messages[name] = {
            "name": name,
            "title": t.ce_type,
            "summary": (t.__doc__ or "").strip().split("\n")[0],
            "contentType": "application/json",
            "headers": _ce_headers_schema(t.ce_type),
            "payload": {"$ref": f"#/components/schemas/{name}"},
            "bindings": {"kafka": {"key": {"type": "string", "description": "account id"}}},
        }
        consumers = topology.consumers_of(t.topic)
        channel = channels.setdefault(
            t.topic,
            {
                "address": t.topic,
                "description": f"Produced by {', '.join(topology.producers_of(t.topic)) or '-'}; consumed by "
                f"{', '.join(consumers) or '-'}.",
                "messages": {},
            },
        )
        # a topic may carry several types (account-changed: AccountChanged and PaymentFailed)
        channel["messages"][name] = {"$ref": f"#/components/messages/{name}"}
        operations[f"publish{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{t.topic}"},
            "messages": [{"$ref": f"#/channels/{t.topic}/messages/{name}"}],
        }
        operations[f"receive{name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{t.topic}"},
            "messages": [{"$ref": f"#/channels/{t.topic}/messages/{name}"}],
        }
    for svc in topology.declared().values():
        for source, dlq in zip(svc.consumes, svc.dead_letter_topics, strict=True):
            channels[dlq.replace(".", "_")] = {
                "address": dlq,
                "description": f"Dead letters of consumer group {svc.group} reading {source}: the original "
                "record with kafka_dlt-* and arrears-* headers naming the original topic, partition, offset, "
                "exception, attempts and service.",
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Arrears events",
            "version": version,
            "description": "CloudEvents 1.0 (Kafka binary mode) events of the Arrears collections platform.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": components_schemas},
    }


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (
                v.replace("#/$defs/", "#/components/schemas/")
                if k == "$ref" and isinstance(v, str)
                else _rewrite_refs(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node
