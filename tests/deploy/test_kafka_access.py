"""Kafka least privilege: every service signs in as its own Strimzi KafkaUser whose ACLs are exactly what its
code reads and writes, with a client certificate in prod and a SCRAM-SHA-512 password with the
`components/kafka-scram` component; KEDA signs in as a user that may only describe what it scales on.

The expected access is derived from the code, not from deploy/gen_topics.py: the declared topology (which the
service host and the transaction enforce), the consumer groups the host and the console's DLQ view join, and
the producer configuration (idempotence needs a cluster ACL). Both variants are rendered with `kubectl
kustomize`. The embedded test broker (Tansu) has no ACLs, so this comparison is what tests their enforcement.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from arrears_console.settings import ConsoleSettings
from arrears_shared import topics, topology
from arrears_shared.settings import KafkaSettings, ServiceSettings
from arrears_shared.stream.relay import make_producer
from arrears_shared.topology import ServiceTopology
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy/kustomize"
PROD = KUSTOMIZE / "overlays/prod"
SCRAM = KUSTOMIZE / "components/kafka-scram"
KUBECTL = "/usr/bin/kubectl"
NAMESPACE = "arrears"

Grant = tuple[str, str, str]  # (resource type, literal name, operation)


def _gen_topics() -> Any:
    spec = importlib.util.spec_from_file_location("arrears_deploy_gen_topics", ROOT / "deploy/gen_topics.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, mod)
    spec.loader.exec_module(mod)
    return mod


gen_topics = _gen_topics()


def kustomize(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run([KUBECTL, "kustomize", str(path)], capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """`prod` as committed, and `prod-scram`: an overlay on top of prod with the kafka-scram component, the
    way docs/deployment.md tells operators to switch (kustomize wants the paths relative)."""
    overlay = tmp_path_factory.mktemp("prod-scram")
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": NAMESPACE,
                "resources": [os.path.relpath(PROD, overlay)],
                "components": [os.path.relpath(SCRAM, overlay)],
            }
        )
    )
    return {
        "dev": kustomize(KUSTOMIZE / "overlays/dev"),
        "prod": kustomize(PROD),
        "prod-scram": kustomize(overlay),
    }


SECURE = ("prod", "prod-scram")


def objs(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def config(docs: list[dict[str, Any]]) -> dict[str, str]:
    return dict(objs(docs, "ConfigMap")["arrears-config"]["data"])


def pod(dep: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = dep["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return spec, container


def env(docs: list[dict[str, Any]], dep: dict[str, Any]) -> dict[str, Any]:
    """What the container sees: arrears-config (envFrom), overridden by its own `env`."""
    _, c = pod(dep)
    return {**config(docs), **{e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}}


# ------------------------------------------------------------------------------------ access from the code


def host_group(svc: ServiceTopology) -> str:
    """The group the service host's consumers join: `ServiceHost.start` runs each consumer under
    `c.group or self.name` and no service names one (test_running_services_match_their_declared_topology
    reads the live groups)."""
    return svc.name


@functools.cache
def relay_producer_is_idempotent() -> bool:
    """Whether the outbox relay's producer is idempotent or transactional (aiokafka keeps a transaction
    manager exactly then); the DLQ replay's producer uses the same client settings."""

    async def build() -> bool:
        producer = make_producer(ServiceSettings(service_name="acl-check"), "acl-check")
        try:
            return producer._txn_manager is not None
        finally:
            await producer.stop()

    return asyncio.run(build())


def code_grants(svc: ServiceTopology) -> set[Grant]:
    reads = set(svc.consumes)
    groups = {host_group(svc)} if svc.consumes else set()
    writes = set(svc.produces) | {topics.dlq_topic(t, host_group(svc)) for t in svc.consumes}
    if svc.replays_dead_letters:
        assert svc.name == "console", "only the console's code browses and replays dead letters"
        reads |= set(topology.dlq_topics())  # its DLQ view subscribes to them, `arrears dlq` scans them
        groups.add(ConsoleSettings.model_fields["console_dlq_group"].default)  # the DLQ view's group
        writes |= set(topics.EVENT_TOPICS)  # a replay goes back to the original topic
    grants = {("topic", t, op) for t in reads for op in ("Read", "Describe")}
    grants |= {("group", g, op) for g in groups for op in ("Read", "Describe")}
    grants |= {("topic", t, op) for t in writes for op in ("Write", "Describe")}
    if relay_producer_is_idempotent():
        grants.add(("cluster", "kafka-cluster", "IdempotentWrite"))
    return grants


def keda_grants(docs: list[dict[str, Any]]) -> set[Grant]:
    """What KEDA's lag triggers read: offsets of their group on their topic (OffsetFetch, ListOffsets and
    Metadata need Describe on both)."""
    out: set[Grant] = set()
    for so in objs(docs, "ScaledObject").values():
        for t in so["spec"]["triggers"]:
            out |= {
                ("topic", t["metadata"]["topic"], "Describe"),
                ("group", t["metadata"]["consumerGroup"], "Describe"),
            }
    return out


def user_grants(user: dict[str, Any]) -> set[Grant]:
    authz = user["spec"]["authorization"]
    assert authz["type"] == "simple"
    out: set[Grant] = set()
    for acl in authz["acls"]:
        r = acl["resource"]
        # no prefix or wildcard: a name grants that one resource
        assert r.get("patternType", "literal") == "literal" and "*" not in r["name"], acl
        assert acl.get("host", "*") == "*" and acl.get("type", "allow") == "allow", acl
        out |= {(r["type"], r["name"], op) for op in acl["operations"]}
    return out


# ------------------------------------------------------------------------------------------------- tests


def test_the_access_derived_from_code_is_what_the_services_do() -> None:
    """Guard the derivation itself with a few facts read off the code paths."""
    sms = code_grants(topology.service("dispatcher-sms"))
    assert ("topic", "notice-due", "Read") in sms and ("group", "dispatcher-sms", "Read") in sms
    assert ("topic", "notice-due.dispatcher-sms.dlq", "Write") in sms
    # notice-due: the email notice of a queued SMS step while SMS is down (docs/architecture.md decision 19)
    assert ("topic", "notice-due", "Write") in sms and ("topic", "account-changed", "Write") not in sms
    assert ("topic", "account-changed", "Read") in sms  # an account paid at its source stops what is queued
    console = code_grants(topology.service("console"))
    assert ("group", "console-dlq", "Read") in console and ("topic", "account-changed", "Write") in console


@pytest.mark.parametrize("variant", SECURE)
def test_every_service_has_a_kafka_user_whose_acls_are_what_its_code_does(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    users = objs(rendered[variant], "KafkaUser")
    assert set(users) == {f"arrears-{s}" for s in topology.services()} | {gen_topics.KEDA_USER}
    for user in users.values():
        assert user["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == gen_topics.KAFKA_CLUSTER
        assert user["metadata"].get("namespace") == NAMESPACE
    for svc in topology.declared().values():
        got, want = user_grants(users[f"arrears-{svc.name}"]), code_grants(svc)
        assert got == want, f"{variant}/{svc.name}: extra {sorted(got - want)}, missing {sorted(want - got)}"
    keda = user_grants(users[gen_topics.KEDA_USER])
    assert keda == keda_grants(rendered[variant]) and {op for *_, op in keda} == {"Describe"}


@pytest.mark.parametrize(("variant", "auth"), [("prod", "tls"), ("prod-scram", "scram-sha-512")])
def test_users_authenticate_by_certificate_in_prod_and_by_password_with_the_component(
    rendered: dict[str, list[dict[str, Any]]], variant: str, auth: str
) -> None:
    for name, user in objs(rendered[variant], "KafkaUser").items():
        assert user["spec"]["authentication"] == {"type": auth}, name


def _mounted_file(spec: dict[str, Any], container: dict[str, Any], path: str) -> tuple[str, str]:
    """(Secret, key) behind a file path in the container: it must lie in a read-only mount of a Secret
    volume that is not optional, under a path that volume's items name."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    for m in container["volumeMounts"]:
        prefix = m["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            assert m.get("readOnly") is True, m
            secret = volumes[m["name"]]["secret"]
            assert secret.get("optional") is False, f"{path}: the pod must not start without it"
            key = {i["path"]: i["key"] for i in secret["items"]}[path[len(prefix) :]]
            return secret["secretName"], key
    raise AssertionError(f"{path} is in no mount of {container['name']}")


def test_prod_services_present_their_own_client_certificate(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["prod"]
    for name, dep in objs(docs, "Deployment").items():
        spec, c = pod(dep)
        e = env(docs, dep)
        assert e["ARREARS_KAFKA_SECURITY_PROTOCOL"] == "SSL", name
        assert e["ARREARS_KAFKA_BOOTSTRAP_SERVERS"] == gen_topics.PROD_BOOTSTRAP, name
        assert "ARREARS_KAFKA_SASL_MECHANISM" not in e and "ARREARS_KAFKA_SASL_PASSWORD" not in e, name
        assert _mounted_file(spec, c, e["ARREARS_KAFKA_SSL_CAFILE"]) == (
            gen_topics.CLUSTER_CA_SECRET,
            "ca.crt",
        )
        assert _mounted_file(spec, c, e["ARREARS_KAFKA_SSL_CERTFILE"]) == (f"arrears-{name}", "user.crt")
        assert _mounted_file(spec, c, e["ARREARS_KAFKA_SSL_KEYFILE"]) == (f"arrears-{name}", "user.key")
        # the settings the pod gets are valid and ask for a client certificate
        s = KafkaSettings(**{k.removeprefix("ARREARS_").lower(): v for k, v in e.items() if "KAFKA" in k})
        assert s.kafka_ssl_certfile and s.kafka_ssl_keyfile and s.kafka_sasl_mechanism is None


def test_with_the_scram_component_services_sign_in_with_their_own_password(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["prod-scram"]
    for name, dep in objs(docs, "Deployment").items():
        spec, c = pod(dep)
        e = env(docs, dep)
        assert e["ARREARS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert e["ARREARS_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", name
        assert e["ARREARS_KAFKA_BOOTSTRAP_SERVERS"] == gen_topics.SCRAM_BOOTSTRAP, name
        assert e["ARREARS_KAFKA_SASL_USERNAME"] == f"arrears-{name}", name
        assert e["ARREARS_KAFKA_SASL_PASSWORD"] == {
            "secretKeyRef": {"name": f"arrears-{name}", "key": "password", "optional": False}
        }, name
        assert "ARREARS_KAFKA_SSL_CERTFILE" not in e and "ARREARS_KAFKA_SSL_KEYFILE" not in e, name
        assert _mounted_file(spec, c, e["ARREARS_KAFKA_SSL_CAFILE"]) == (
            gen_topics.CLUSTER_CA_SECRET,
            "ca.crt",
        )
        # a SCRAM user's Secret holds no certificate: nothing may mount one
        assert gen_topics.USER_VOLUME not in {v["name"] for v in spec["volumes"]}, name


@pytest.mark.parametrize("variant", SECURE)
def test_keda_reads_lag_as_its_own_user_over_tls(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    bootstrap = config(docs)["ARREARS_KAFKA_BOOTSTRAP_SERVERS"]
    (auth,) = objs(docs, "TriggerAuthentication").values()
    params = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"].get("secretTargetRef", [])}
    from_config = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"].get("configMapTargetRef", [])}
    assert params["ca"] == (gen_topics.CLUSTER_CA_SECRET, "ca.crt")
    if variant == "prod":
        assert params == {
            "ca": (gen_topics.CLUSTER_CA_SECRET, "ca.crt"),
            "cert": (gen_topics.KEDA_USER, "user.crt"),
            "key": (gen_topics.KEDA_USER, "user.key"),
        }
        assert not from_config
    else:
        assert params["password"] == (gen_topics.KEDA_USER, "password") and set(params) == {"ca", "password"}
        cm, key = from_config["username"]
        assert objs(docs, "ConfigMap")[cm]["data"][key] == gen_topics.KEDA_USER
        assert objs(docs, "ConfigMap")[cm]["metadata"]["namespace"] == NAMESPACE
    for so in objs(docs, "ScaledObject").values():
        for t in so["spec"]["triggers"]:
            md = t["metadata"]
            assert md["bootstrapServers"] == bootstrap and md["tls"] == "enable"
            assert md.get("sasl") == (None if variant == "prod" else "scram_sha512")
            assert t["authenticationRef"]["name"] == auth["metadata"]["name"]


def test_kafka_security_per_overlay(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert config(rendered["dev"])["ARREARS_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert not objs(rendered["dev"], "KafkaUser")
    # more replicas in prod than in dev
    for kind, field in (("Deployment", "replicas"), ("ScaledObject", "minReplicaCount")):
        dev_total = sum(o["spec"].get(field, 0) for o in objs(rendered["dev"], kind).values())
        prod_total = sum(o["spec"].get(field, 0) for o in objs(rendered["prod"], kind).values())
        assert prod_total > dev_total, kind


def test_client_certificate_settings_need_tls() -> None:
    """A certificate with a PLAINTEXT protocol would be ignored: refuse it at start-up instead."""
    with pytest.raises(ValidationError, match="SSL"):
        KafkaSettings(kafka_ssl_certfile="/x/user.crt", kafka_ssl_keyfile="/x/user.key")
    with pytest.raises(ValidationError, match="CERTFILE"):
        KafkaSettings(kafka_security_protocol="SSL", kafka_ssl_keyfile="/x/user.key")
    with pytest.raises(ValidationError, match="CAFILE needs"):
        KafkaSettings(
            kafka_ssl_cafile="/x/ca.crt"
        )  # a CA with PLAINTEXT: the broker would be spoken to in clear
    assert KafkaSettings(kafka_security_protocol="SSL", kafka_ssl_cafile="/x/ca.crt").kafka_ssl_cafile
