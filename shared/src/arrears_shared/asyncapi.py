"""AsyncAPI 3.0 document for every Arrears topic, generated from the pydantic event models and the declared
topology.

Published with the project (`arrears schemas export DIR`, `docs/schemas/`) so downstream teams can
subscribe without reading our code. It holds:

- servers: the embedded stack (PLAINTEXT) and production (TLS with client certificates, or SASL
  SCRAM-SHA-512 on its own listener as the documented alternative — `docs/deployment.md`);
- one channel per event topic and per dead-letter topic, with the Kafka binding (partitions, replicas,
  retention) of the Strimzi `KafkaTopic` that `deploy/gen_topics.py` renders for it;
- one `send` operation per producing service and topic, one `receive` operation per consuming service and
  topic carrying its consumer group (`groupId`), and one `send` per dead-letter topic by the group that
  writes it;
- the messages: CloudEvents headers + the event's JSON Schema; dead letters: the original record plus the
  `kafka_dlt-*` / `arrears-*` headers of `stream.dead_letter`.
"""

from __future__ import annotations

from typing import Any

from . import topology
from .events import EVENT_TYPES, json_schemas
from .stream import dead_letter as dlt
from .topics import DLQ_TOPIC_SIZING, EVENT_TOPIC_SIZING, EVENT_TOPICS, TopicSizing

KAFKA_BINDING = "0.5.0"


SERVERS: dict[str, Any] = {
    "dev": {
        "host": "127.0.0.1:9092",
        "protocol": "kafka",
        "title": "Embedded stack",
        "description": "The embedded Kafka-compatible broker of `make run` / `arrears up` (PLAINTEXT, no "
        "authentication; memory only).",
    },
    "production": {
        "host": "arrears-kafka-bootstrap:9093",
        "protocol": "kafka-secure",
        "title": "Production (Strimzi), mutual TLS",
        "description": "TLS listener of the Strimzi cluster `arrears` in the application namespace, clients "
        "authenticated by certificate. Each service signs in as its own KafkaUser whose ACLs allow exactly "
        "its channels and consumer group (ARREARS_KAFKA_SECURITY_PROTOCOL=SSL). A downstream team gets a "
        "KafkaUser of its own.",
        "security": [{"$ref": "#/components/securitySchemes/mtls"}],
    },
    "production-scram": {
        "host": "arrears-kafka-bootstrap:9094",
        "protocol": "kafka-secure",
        "title": "Production (Strimzi), SASL SCRAM-SHA-512",
        "description": "The documented alternative to client certificates: TLS listener with SASL "
        "SCRAM-SHA-512 (ARREARS_KAFKA_SECURITY_PROTOCOL=SASL_SSL), the same KafkaUsers and ACLs.",
        "security": [{"$ref": "#/components/securitySchemes/scramSha512"}],
    },
}

SECURITY_SCHEMES: dict[str, Any] = {
    "mtls": {
        "type": "X509",
        "description": "Mutual TLS: a client certificate issued by the cluster's clients CA (Strimzi "
        "KafkaUser with `authentication: tls`); ARREARS_KAFKA_SSL_CERTFILE / ARREARS_KAFKA_SSL_KEYFILE.",
    },
    "scramSha512": {
        "type": "scramSha512",
        "description": "SASL SCRAM-SHA-512 over TLS (Strimzi KafkaUser with `authentication: "
        "scram-sha-512`); ARREARS_KAFKA_SASL_MECHANISM=SCRAM-SHA-512 with user name and password.",
    },
}

_KEY = {
    "type": "string",
    "description": "The account id (UTF-8); `campaign:<id>` for campaign-wide overrides",
}


def _ce_headers_schema(ce_type: str | None = None) -> dict[str, Any]:
    """The CloudEvents binary-mode headers (of one type, or of any type for dead letters)."""
    type_schema: dict[str, Any] = {"type": "string"}
    if ce_type is not None:
        type_schema["const"] = ce_type
    return {
        "type": "object",
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject"],
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": {"type": "string", "description": "Unique, stable across retries and replays"},
            "ce_source": {"type": "string", "description": "Producing service"},
            "ce_type": type_schema,
            "ce_time": {"type": "string", "format": "date-time"},
            "ce_subject": {"type": "string", "description": "Account id (also the Kafka key)"},
            "content-type": {"type": "string", "const": "application/json"},
        },
    }


_DLQ_HEADER_DOCS: dict[str, tuple[str, dict[str, Any]]] = {
    dlt.ORIGINAL_TOPIC: ("Source topic", {}),
    dlt.ORIGINAL_PARTITION: ("Source partition (decimal; -1 if unknown)", {"pattern": r"^-?\d+$"}),
    dlt.ORIGINAL_OFFSET: ("Source offset (decimal; -1 if unknown)", {"pattern": r"^-?\d+$"}),
    dlt.ORIGINAL_TIMESTAMP: (
        "Source record timestamp, ms since the epoch (decimal)",
        {"pattern": r"^-?\d+$"},
    ),
    dlt.ORIGINAL_GROUP: ("The consumer group that gave up", {}),
    dlt.EXCEPTION_FQCN: ("Exception class, fully qualified", {}),
    dlt.EXCEPTION_MESSAGE: ("Exception message, record content redacted (at most 1,000 characters)", {}),
    dlt.EXCEPTION_STACKTRACE: ("Stack trace, redacted (last 4,000 characters; may be empty)", {}),
    dlt.ATTEMPTS: ("Attempts made (1 for a schema-invalid record)", {"pattern": r"^\d+$"}),
    dlt.SERVICE: ("The service that gave up", {}),
    dlt.DEAD_LETTERED_AT: ("When it was dead-lettered (ISO 8601, UTC)", {"format": "date-time"}),
}


def dead_letter_headers_schema() -> dict[str, Any]:
    """Headers of a dead-letter record: the DLQ headers (always) and the original CloudEvents headers (when
    the original record had them: a record can be dead-lettered because they are missing)."""
    ce = _ce_headers_schema()
    return {
        "type": "object",
        "required": sorted(dlt.DLQ_HEADERS),
        "properties": {
            **{
                name: {"type": "string", "description": doc, **extra}
                for name, (doc, extra) in _DLQ_HEADER_DOCS.items()
            },
            **ce["properties"],
        },
    }


def _channel_binding(topic: str, sizing: TopicSizing) -> dict[str, Any]:
    return {
        "kafka": {
            "topic": topic,
            "partitions": sizing.partitions,
            "replicas": sizing.replicas,
            "topicConfiguration": {"cleanup.policy": ["delete"], "retention.ms": sizing.retention_ms},
            "bindingVersion": KAFKA_BINDING,
        }
    }


def _group_binding(group: str) -> dict[str, Any]:
    return {"kafka": {"groupId": {"type": "string", "const": group}, "bindingVersion": KAFKA_BINDING}}


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace(".", "-").split("-"))


def document(version: str = "0.1.0") -> dict[str, Any]:
    schemas = json_schemas()
    declared = topology.declared().values()
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    components_schemas: dict[str, Any] = {}
    for topic in EVENT_TOPICS:
        channels[topic] = {
            "address": topic,
            "description": f"Produced by {', '.join(topology.producers_of(topic)) or '-'}; consumed by "
            f"{', '.join(topology.consumers_of(topic)) or '-'}. Key: the account id. Dispatch on `ce_type`.",
            "messages": {},
            "bindings": _channel_binding(topic, EVENT_TOPIC_SIZING),
        }
    for t in EVENT_TYPES:
        name = t.__name__
        schema = dict(schemas[t.ce_type])
        components_schemas.update(schema.pop("$defs", {}))
        components_schemas[name] = _rewrite_refs(schema)
        messages[name] = {
            "name": name,
            "title": t.ce_type,
            "summary": (t.__doc__ or "").strip().split("\n")[0],
            "contentType": "application/json",
            "headers": _ce_headers_schema(t.ce_type),
            "payload": {"$ref": f"#/components/schemas/{name}"},
            "bindings": {"kafka": {"key": _KEY, "bindingVersion": KAFKA_BINDING}},
        }
        # a topic may carry several types (account-changed: AccountChanged and PaymentFailed)
        channels[t.topic]["messages"][name] = {"$ref": f"#/components/messages/{name}"}
    messages["DeadLetter"] = {
        "name": "DeadLetter",
        "title": "Dead-lettered record",
        "summary": "A record a consumer group could not process, as it was read, plus why.",
        "description": "Key, value and headers of the original record unchanged (the value may not match the "
        "source topic's schema: that may be why it is here), plus the `kafka_dlt-*` headers of Spring "
        "Kafka's DeadLetterPublishingRecoverer and `arrears-*` headers. `arrears dlq replay` republishes "
        "it to the source topic with its `ce_id`, so a replay is deduplicated by the consumers' inboxes.",
        "headers": dead_letter_headers_schema(),
        "payload": {"description": "The original record value (normally an event of the source topic)"},
        "bindings": {"kafka": {"key": _KEY, "bindingVersion": KAFKA_BINDING}},
    }

    operations: dict[str, Any] = {}
    for svc in declared:
        for topic in svc.produces:
            operations[f"{_camel(svc.name)}Sends{_camel(topic)}"] = {
                "action": "send",
                "title": f"{svc.name} publishes {topic}",
                "summary": "Through its transactional outbox (acks=all); a crash may republish (same ce_id).",
                "channel": {"$ref": f"#/channels/{topic}"},
                "messages": _channel_messages(channels, topic),
            }
        for topic, dlq in zip(svc.consumes, svc.dead_letter_topics, strict=True):
            operations[f"{_camel(svc.name)}Receives{_camel(topic)}"] = {
                "action": "receive",
                "title": f"{svc.name} consumes {topic}",
                "summary": f"Consumer group `{svc.group}`; idempotent (inbox on ce_id); offsets committed after "
                "the effects. Unknown types and unknown fields are ignored.",
                "channel": {"$ref": f"#/channels/{topic}"},
                "messages": _channel_messages(channels, topic),
                "bindings": _group_binding(svc.group),
            }
            channels[dlq] = {
                "address": dlq,
                "description": f"Dead letters of consumer group `{svc.group}` reading `{topic}`.",
                "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
                "bindings": _channel_binding(dlq, DLQ_TOPIC_SIZING),
            }
            operations[f"{_camel(svc.name)}DeadLetters{_camel(topic)}"] = {
                "action": "send",
                "title": f"{svc.name} dead-letters {topic}",
                "summary": "Schema-invalid records at once; others after the bounded retries.",
                "channel": {"$ref": f"#/channels/{dlq}"},
                "messages": [{"$ref": f"#/channels/{dlq}/messages/DeadLetter"}],
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Arrears events",
            "version": version,
            "description": "CloudEvents 1.0 (Kafka binary mode) events of the Arrears collections platform. "
            "Evolution rule: within a `.vN` type producers may add optional fields and consumers ignore "
            "fields they do not know; anything else is a new `.vN` type (docs/upgrades.md).",
        },
        "defaultContentType": "application/json",
        "servers": SERVERS,
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": components_schemas,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _channel_messages(channels: dict[str, Any], topic: str) -> list[dict[str, str]]:
    return [{"$ref": f"#/channels/{topic}/messages/{name}"} for name in channels[topic]["messages"]]


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
