"""The published AsyncAPI document: valid AsyncAPI 3.0, and in agreement with the code it describes (the
declared topology and consumer groups, the dead-letter headers the code writes, the Strimzi topics)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from aiokafka.structs import ConsumerRecord
from arrears_shared import topology
from arrears_shared.asyncapi import dead_letter_headers_schema, document
from arrears_shared.cloudevents import InvalidEvent, encode
from arrears_shared.events import EVENT_TYPES
from arrears_shared.stream.dead_letter import DLQ_HEADERS, Failure, dead_letter

from .factories import account_changed

HERE = Path(__file__).resolve().parent
# the official JSON Schema of AsyncAPI 3.0.0 documents (see asyncapi-3.0.0.schema.NOTICE)
SPEC = HERE / "asyncapi-3.0.0.schema.json"
DEPLOY = HERE.parents[1] / "deploy"
KAFKA_TOPICS = DEPLOY / "kustomize" / "base" / "kafka-topics.yaml"
GEN_TOPICS = DEPLOY / "gen_topics.py"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return document()


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SPEC.read_text()))


def test_the_document_is_valid_asyncapi_3(doc: dict[str, Any], validator: jsonschema.Draft7Validator) -> None:
    errors = [f"{'/'.join(map(str, e.path))}: {e.message[:200]}" for e in validator.iter_errors(doc)]
    assert not errors, errors


def test_the_validator_rejects_a_broken_document(
    doc: dict[str, Any], validator: jsonschema.Draft7Validator
) -> None:
    broken = json.loads(json.dumps(doc))
    next(iter(broken["operations"].values()))["bindings"] = {"kafka": {"groupId": 7}}
    assert list(validator.iter_errors(broken))


def _pointer(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    assert refs and all(r.startswith("#/") for r in refs)
    for ref in refs:
        _pointer(doc, ref)  # KeyError names the dangling one


def test_servers_offer_mutual_tls_and_scram_in_production(doc: dict[str, Any]) -> None:
    gen_topics = _load_gen_topics()
    servers = doc["servers"]
    assert servers["dev"]["protocol"] == "kafka"
    secure = {
        _pointer(doc, scheme["$ref"])["type"]: server["host"]
        for server in servers.values()
        if server["protocol"] == "kafka-secure"
        for scheme in server["security"]
    }
    assert secure == {"X509": gen_topics.PROD_BOOTSTRAP, "scramSha512": gen_topics.SCRAM_BOOTSTRAP}


def _load_gen_topics() -> Any:
    spec = importlib.util.spec_from_file_location("arrears_deploy_gen_topics_asyncapi", GEN_TOPICS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_consumer_group_receives_what_it_declares_with_its_group_id(doc: dict[str, Any]) -> None:
    receives = {
        (_pointer(doc, op["channel"]["$ref"])["address"], op["bindings"]["kafka"]["groupId"]["const"])
        for op in doc["operations"].values()
        if op["action"] == "receive"
    }
    declared = {(t, s.group) for s in topology.declared().values() for t in s.consumes}
    assert receives == declared


def test_every_producer_sends_what_it_declares(doc: dict[str, Any]) -> None:
    sends = {
        (op["title"].split()[0], _pointer(doc, op["channel"]["$ref"])["address"])
        for op in doc["operations"].values()
        if op["action"] == "send"
    }
    declared = {
        (s.name, t) for s in topology.declared().values() for t in (*s.produces, *s.dead_letter_topics)
    }
    assert sends == declared


def test_channels_are_every_topic_and_dlq_with_the_strimzi_sizing(doc: dict[str, Any]) -> None:
    strimzi = {
        d["spec"]["topicName"]: d["spec"]
        for d in yaml.safe_load_all(KAFKA_TOPICS.read_text())
        if d and d.get("kind") == "KafkaTopic"
    }
    channels = {c["address"]: c for c in doc["channels"].values()}
    assert set(channels) == set(topology.all_topics()) == set(strimzi)
    for address, channel in channels.items():
        binding, spec = channel["bindings"]["kafka"], strimzi[address]
        assert binding["topic"] == address
        assert (binding["partitions"], binding["replicas"]) == (spec["partitions"], spec["replicas"]), address
        assert binding["topicConfiguration"]["retention.ms"] == spec["config"]["retention.ms"], address
    for t in EVENT_TYPES:
        assert t.__name__ in channels[t.topic]["messages"]
        message = doc["components"]["messages"][t.__name__]
        assert message["payload"] == {"$ref": f"#/components/schemas/{t.__name__}"}
        assert message["headers"]["properties"]["ce_type"]["const"] == t.ce_type


def test_dead_letter_headers_are_the_ones_the_code_writes(
    doc: dict[str, Any], validator: jsonschema.Draft7Validator
) -> None:
    schema = dead_letter_headers_schema()
    assert set(schema["required"]) == DLQ_HEADERS
    assert doc["components"]["messages"]["DeadLetter"]["headers"] == schema
    for dlq in topology.dlq_topics():
        channel = next(c for c in doc["channels"].values() if c["address"] == dlq)
        assert channel["messages"] == {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}}
    # a real dead letter (a schema-invalid event) matches the documented headers
    rec = encode(account_changed(1), source="ingest", id="e-1")
    consumed = ConsumerRecord(
        "account-changed", 2, 41, 1_700_000_000_000, 0, rec.key, b"{}", None, 2, 2, rec.headers
    )
    out = dead_letter(Failure(consumed, InvalidEvent("data invalid"), 1), group="segmenter")
    headers = {k: v.decode() for k, v in out.headers}
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(headers)
    assert out.topic == "account-changed.segmenter.dlq"
