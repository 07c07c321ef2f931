"""Validate the Kubernetes manifests under deploy/kustomize without a cluster or network.

Renders base and overlays with `kubectl kustomize` (Debian's `kubectl`; `.ci/run` installs it), validates every
object against a schema (core kinds: the Kubernetes JSON schemas shipped by `kubernetes-validate`; custom
resources: the CRD schemas vendored in tests/deploy/schemas/), and checks the invariants between manifests and
code: services, modules, probes, secrets the settings read, Ingress paths against the apps' public routes,
network policy, topics + DLQs, alert metric names, KEDA targets and consumer groups.
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import arrears_shared.settings as settings_module
import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import pytest
import referencing
import yaml
from arrears_shared import topology
from arrears_shared.inbound import ENTRY_POINT_GROUP as INBOUND_GROUP
from arrears_shared.settings import ServiceSettings
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZE = DEPLOY / "kustomize"
TARGETS = {
    "base": KUSTOMIZE / "base",
    "dev": KUSTOMIZE / "overlays/dev",
    "prod": KUSTOMIZE / "overlays/prod",
}
K8S_VERSION = "1.31.0"  # Kubernetes version whose API schemas the manifests must satisfy
CORE_KINDS = {
    "Namespace",
    "Deployment",
    "Service",
    "ConfigMap",
    "ServiceAccount",
    "PodDisruptionBudget",
    "Ingress",
    "NetworkPolicy",
}
CRD_SCHEMAS = Path(__file__).resolve().parent / "schemas"  # vendored openAPIV3Schemas, see its README
HTTP_PORT = "8000"
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# The metrics the services export (shared telemetry); alerts and dashboards may use nothing else.
COUNTERS_AND_GAUGES = {
    "arrears_events_consumed_total",
    "arrears_events_produced_total",
    "arrears_events_failed_total",
    "arrears_events_dead_lettered_total",
    "arrears_outbox_backlog",
    "arrears_outbox_oldest_age_seconds",
    "arrears_consumer_lag",
    "arrears_consumer_processing_delay_seconds",
    "arrears_messages_sent_total",
    "arrears_ingest_last_success_timestamp_seconds",
    "arrears_ingest_degraded",
    "arrears_audit_chain_ok",
    "arrears_audit_chain_verified_seq",
    "arrears_audit_chain_last_check_timestamp_seconds",
    "arrears_circuit_state",
}
HISTOGRAMS = {"arrears_handler_seconds", "arrears_provider_request_seconds", "arrears_http_request_seconds"}


def service_metrics() -> set[str]:
    """Every sample name a service's own `metrics` module registers (imported: they register on import)."""
    import prometheus_client

    for svc in ("ingest", "responses", "escalation", "dispatcher_email", "scoring"):
        importlib.import_module(f"arrears_{svc}.metrics")
    return (
        {
            sample.name
            for family in prometheus_client.REGISTRY.collect()
            for sample in family.samples
            if sample.name.startswith("arrears_")
        }
        | {
            f"{family.name}_total"
            for family in prometheus_client.REGISTRY.collect()
            if family.type == "counter" and family.name.startswith("arrears_")
        }
        | {  # a labelled gauge has no sample until a child is set
            family.name
            for family in prometheus_client.REGISTRY.collect()
            if family.type == "gauge" and family.name.startswith("arrears_")
        }
    )


KNOWN_METRICS = (
    COUNTERS_AND_GAUGES
    | HISTOGRAMS
    | {f"{h}_{s}" for h in HISTOGRAMS for s in ("bucket", "sum", "count")}
    | service_metrics()
)
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring"}

SECRET_LIKE = re.compile(
    r"(PASSWORD|SECRET|TOKEN|API_KEY|SIGNING_KEY|DATABASE_URL|PRIVATE|CREDENTIALS)", re.I
)


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


gen_topics = _load("arrears_deploy_gen_topics", DEPLOY / "gen_topics.py")
gen_workloads = _load("arrears_deploy_gen_workloads", DEPLOY / "gen_workloads.py")


def kustomize(targets: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    """`kubectl kustomize` of each target, run side by side (each takes a few hundred milliseconds)."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing: install Debian's `kubectl` package (.ci/run does)"
    procs = {
        name: subprocess.Popen(
            [kubectl, "kustomize", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, path in targets.items()
    }
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"kubectl kustomize {targets[name]} failed: {stderr}"
        out[name] = [d for d in yaml.load_all(stdout, Loader=YAML_LOADER) if d]
    return out


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return kustomize(TARGETS)


def objs(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def config_data(docs: list[dict[str, Any]]) -> dict[str, str]:
    return objs(docs, "ConfigMap")["arrears-config"]["data"]


def app_container(dep: dict[str, Any]) -> dict[str, Any]:
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{path}[{i}]")
    else:
        yield path, value


def metric_names(expr: str) -> set[str]:
    """Series names used by a PromQL expression (functions, keywords, labels and durations removed)."""
    s = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", "", s)
    s = re.sub(r"\[[^\]]*\]", "", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)", s):
        if re.match(r"\s*\(", s[m.end() :]) or m.group(1).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(1))
    return names


# --------------------------------------------------------------------------------------------- rendering


def test_generated_files_are_up_to_date() -> None:
    for gen in (gen_topics, gen_workloads):
        for path, text in gen.render().items():
            assert path.exists(), f"{path} missing: run python deploy/{Path(gen.__file__).name}"
            assert path.read_text() == text, f"{path} is stale: run python deploy/{Path(gen.__file__).name}"


def test_every_yaml_and_json_file_parses() -> None:
    files = sorted(KUSTOMIZE.rglob("*.yaml"))
    assert len(files) > 10
    for f in files:
        docs = [d for d in yaml.load_all(f.read_text(), Loader=YAML_LOADER) if d is not None]
        assert docs, f"{f} is empty"
        for d in docs:
            assert isinstance(d, dict) and "apiVersion" in d and "kind" in d, f"{f}: not an object"
    for f in KUSTOMIZE.rglob("*.json"):
        json.loads(f.read_text())


def test_targets_render_with_unique_objects(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        ids = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
        assert len(ids) == len(set(ids)), name
        namespaced = [d for d in docs if d["kind"] != "Namespace"]
        (ns,) = objs(docs, "Namespace")
        assert {d["metadata"]["namespace"] for d in namespaced} == {ns}, name
    assert objs(rendered["dev"], "Namespace").keys() == {"arrears-dev"}
    assert objs(rendered["prod"], "Namespace").keys() == {"arrears"}


def _k8s_schema_folder() -> str:
    mm = kubernetes_validate.utils.major_minor
    version = [v for v in kubernetes_validate.utils.all_versions() if mm(v) <= mm(K8S_VERSION)][-1]
    assert mm(version) == mm(K8S_VERSION), f"kubernetes-validate has no schemas for {K8S_VERSION}"
    return f"kubernetes-json-schema/v{version}-local-strict"


@functools.cache
def k8s_definitions() -> referencing.Registry[Any]:
    """The Kubernetes API definitions (ObjectMeta, PodSpec, ...) every strict kind schema refers to."""
    defs = kubernetes_validate.utils.schema_contents(f"{_k8s_schema_folder()}/_definitions.json", K8S_VERSION)
    return referencing.Resource.from_contents(defs) @ referencing.Registry()


@functools.cache
def schema_validator(kind: str, api_version: str) -> jsonschema.Draft202012Validator:
    """The strict schema of one kind from kubernetes-validate, compiled once (its `validate()` reloads the
    multi-megabyte definitions on every call, which would make this test take seconds)."""
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = f"{_k8s_schema_folder()}/{kind.lower()}-{api}.json"
    schema = kubernetes_validate.utils.schema_contents(path, K8S_VERSION)
    return jsonschema.Draft202012Validator(
        schema, registry=referencing.Resource.from_contents(schema) @ k8s_definitions()
    )


OBJECT_META = (
    "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
)


def strict_structural(schema: Any) -> Any:
    """A CRD's structural schema as the API server applies it with strict field validation
    (`kubectl apply --validate=strict`): an object property the schema does not declare is an error, unless
    `x-kubernetes-preserve-unknown-fields` or `additionalProperties` allows it. The other `x-kubernetes-*`
    keywords are annotations (jsonschema ignores unknown keywords)."""
    if isinstance(schema, list):
        return [strict_structural(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: (
            {n: strict_structural(v) for n, v in val.items()} if k == "properties" else strict_structural(val)
        )
        for k, val in schema.items()
    }
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_validator(kind: str, api_version: str) -> jsonschema.Draft202012Validator | None:
    """The vendored CRD schema of a custom resource kind (tests/deploy/schemas/), or None if there is none."""
    group, _, version = api_version.rpartition("/")
    path = CRD_SCHEMAS / f"{kind.lower()}_{group}_{version}.json"
    if not path.is_file():
        return None
    schema = strict_structural(json.loads(path.read_text()))
    props = schema["properties"]
    props["apiVersion"] = {"type": "string", "enum": [api_version]}
    props["kind"] = {"type": "string", "enum": [kind]}
    props["metadata"] = {"$ref": OBJECT_META}
    schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind", "metadata"})
    return jsonschema.Draft202012Validator(schema, registry=k8s_definitions())


def validator_for(doc: dict[str, Any]) -> jsonschema.Draft202012Validator:
    if doc["kind"] in CORE_KINDS:
        return schema_validator(doc["kind"], doc["apiVersion"])
    found = crd_validator(doc["kind"], doc["apiVersion"])
    assert found, (
        f"no schema for {doc['apiVersion']} {doc['kind']}: vendor its CRD schema in tests/deploy/schemas/ "
        "(see the README there) or add a core kind to CORE_KINDS"
    )
    return found


def test_schema_validator_agrees_with_kubernetes_validate(rendered: dict[str, list[dict[str, Any]]]) -> None:
    dep = copy.deepcopy(objs(rendered["prod"], "Deployment")["console"])
    kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    schema_validator("Deployment", "apps/v1").validate(dep)
    app_container(dep)["livenessProbe"]["httpGet"]["paht"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    with pytest.raises(jsonschema.ValidationError):
        schema_validator("Deployment", "apps/v1").validate(dep)


def test_every_object_matches_a_schema(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Core kinds against the Kubernetes schemas, custom resources against their CRDs; a kind with neither
    fails."""
    seen = set()
    for name, docs in rendered.items():
        for d in docs:
            seen.add(d["kind"])
            errors = sorted(validator_for(d).iter_errors(d), key=str)
            assert not errors, (
                f"{name}: {d['kind']}/{d['metadata']['name']}: {errors[0].message} at {list(errors[0].path)}"
            )
    assert CORE_KINDS <= seen
    custom = {
        "KafkaTopic",
        "KafkaUser",
        "ScaledObject",
        "TriggerAuthentication",
        "PodMonitor",
        "PrometheusRule",
    }
    assert custom <= seen


def test_crd_schemas_reject_what_the_api_server_would(rendered: dict[str, list[dict[str, Any]]]) -> None:
    prod = rendered["prod"]
    so = next(iter(objs(prod, "ScaledObject").values()))
    validator = validator_for(so)
    validator.validate(so)
    cases: list[Callable[[dict[str, Any]], None]] = [
        lambda o: o["spec"].update(minReplicas=1),  # unknown field (it is minReplicaCount)
        lambda o: o["spec"]["triggers"][0]["metadata"].update(
            lagThreshold=500
        ),  # metadata values are strings
        lambda o: o["spec"].pop("scaleTargetRef"),  # required
        lambda o: o["metadata"].update(labels={"a": 1}),  # ObjectMeta from the Kubernetes schema
        lambda o: o.update(apiVersion="keda.sh/v1"),  # the CRD's group/version only
    ]
    for break_it in cases:
        broken = copy.deepcopy(so)
        break_it(broken)
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(broken)
    topic = copy.deepcopy(next(iter(objs(prod, "KafkaTopic").values())))
    topic["spec"]["config"]["any.broker.setting"] = "x"  # x-kubernetes-preserve-unknown-fields
    validator_for(topic).validate(topic)
    topic["spec"]["partitions"] = 0
    with pytest.raises(jsonschema.ValidationError):
        validator_for(topic).validate(topic)
    with pytest.raises(AssertionError, match="no schema"):
        validator_for({"apiVersion": "example.com/v1", "kind": "Widget"})


# ------------------------------------------------------------------------------------------- workloads


def test_one_deployment_per_service_running_its_module(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        deployments = objs(docs, "Deployment")
        assert set(deployments) == set(topology.services()), name
        for svc, dep in deployments.items():
            module = topology.service(svc).package
            assert (ROOT / "services" / svc / "src" / module).is_dir(), f"no package {module} for {svc}"
            c = app_container(dep)
            assert c["command"] == ["python", "-m", module], svc
            assert c["image"].startswith("ghcr.io/arrears/arrears:"), svc
            assert {"name": "ARREARS_SERVICE_NAME", "value": svc} in c["env"]
            assert (
                dep["spec"]["selector"]["matchLabels"].items()
                <= dep["spec"]["template"]["metadata"]["labels"].items()
            )


def test_probes_security_and_lifecycle(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        assert config_data(docs)["ARREARS_HTTP_PORT"] == HTTP_PORT
        assert config_data(docs)["ARREARS_HTTP_HOST"] == "0.0.0.0"
        for svc, dep in objs(docs, "Deployment").items():
            pod = dep["spec"]["template"]["spec"]
            c = app_container(dep)
            where = f"{name}/{svc}"
            assert c["ports"] == [{"name": "http", "containerPort": int(HTTP_PORT), "protocol": "TCP"}], where
            assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, where
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, where
            assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, where
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], where
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"], where
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], where
            assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] > 0, where
            assert pod["terminationGracePeriodSeconds"] == 30, where
            assert pod["serviceAccountName"] in objs(docs, "ServiceAccount"), where
            ann = dep["spec"]["template"]["metadata"]["annotations"]
            assert ann == {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": HTTP_PORT,
                "prometheus.io/path": "/metrics",
            }, where
            # every mount has a volume, every referenced ConfigMap exists or is the documented site ConfigMap
            vols = {v["name"] for v in pod["volumes"]}
            assert {m["name"] for m in c["volumeMounts"]} <= vols, where
            for ref in c["envFrom"]:
                assert ref["configMapRef"]["name"] in {*objs(docs, "ConfigMap"), gen_workloads.SITE_CONFIG}


def test_services_and_pdbs_select_their_pods(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        services, pdbs = objs(docs, "Service"), objs(docs, "PodDisruptionBudget")
        for svc, dep in objs(docs, "Deployment").items():
            pod_labels = dep["spec"]["template"]["metadata"]["labels"]
            assert services[svc]["spec"]["selector"].items() <= pod_labels.items(), f"{name}/{svc}"
            assert services[svc]["spec"]["ports"][0]["targetPort"] == "http"
            assert pdbs[svc]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(), f"{name}/{svc}"
            assert "maxUnavailable" in pdbs[svc]["spec"], (
                "minAvailable would block drains of 1-replica services"
            )


CONSOLE = "console"  # the edge: its UI, sign-in and ops API are for browsers (every route behind its gate)
PROBES = {"/healthz", "/readyz", "/metrics"}  # public for the kubelet and Prometheus, inside the cluster only
INGRESS_NAMESPACE = "ingress-nginx"  # the ingress controller's namespace the base policy admits
MONITORING_NAMESPACE = "monitoring"


@functools.cache
def route_tables() -> tuple[Any, ...]:
    """Every route of every service's app with its access (`arrears security matrix` reads the same)."""
    from arrears_cli.commands.security import tables

    return tuple(r for table in tables() for r in table)


def ingress_backend(ingress: dict[str, Any], path: str) -> tuple[str, str] | None:
    """The (Service, port name) an Ingress sends a request path to, by the networking.k8s.io/v1 rules: Exact
    matches the whole path, Prefix whole path elements; the longest match wins, Exact before Prefix."""
    elements = [e for e in path.split("/") if e]
    best: tuple[int, int, tuple[str, str]] | None = None
    for rule in ingress["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            want = [e for e in p["path"].split("/") if e]
            if p["pathType"] == "Exact":
                hit = p["path"] == path
            else:
                assert p["pathType"] == "Prefix", "ImplementationSpecific depends on the controller"
                hit = elements[: len(want)] == want
            if hit:
                b = p["backend"]["service"]
                rank = (len(p["path"]), p["pathType"] == "Exact", (b["name"], b["port"]["name"]))
                best = max(best, rank) if best else rank
    return best[2] if best else None


def test_ingress_backend_matching() -> None:
    ing = {
        "spec": {
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": p,
                                "pathType": t,
                                "backend": {"service": {"name": n, "port": {"name": "h"}}},
                            }
                            for p, t, n in [
                                ("/", "Prefix", "c"),
                                ("/a/b", "Prefix", "x"),
                                ("/a", "Exact", "y"),
                            ]
                        ]
                    }
                }
            ]
        }
    }
    assert ingress_backend(ing, "/a/b/c") == ("x", "h")
    assert ingress_backend(ing, "/a/bc") == ("c", "h")
    assert ingress_backend(ing, "/a") == ("y", "h")
    assert ingress_backend(ing, "/a/") == ("c", "h")


def test_ingress_routes_every_public_route_and_nothing_internal(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Each provider webhook (a public route) reaches the service that serves it; the console is the edge;
    no other route of another service, and no probe or /metrics of one, is reachable from outside."""
    routes = route_tables()
    assert {r.path for r in routes if r.permission is None} >= {"/ingest/payments/stripe", "/webhooks/quo"}
    for name, docs in rendered.items():
        ingress = objs(docs, "Ingress")["arrears"]
        services = objs(docs, "Service")
        for rule in ingress["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                b = p["backend"]["service"]
                (port,) = [x for x in services[b["name"]]["spec"]["ports"] if x["name"] == b["port"]["name"]]
                assert port["targetPort"] == "http", f"{name}: {p['path']} does not reach the app's port"
        for r in routes:
            backend = ingress_backend(ingress, re.sub(r"\{[^}]*\}", "x", r.path))
            exposed = backend is not None and backend[0] == r.service
            where = f"{name}: {r.method} {r.path} of {r.service}"
            if r.path in PROBES:
                assert not exposed or r.service == CONSOLE, f"{where} is for in-cluster callers only"
            elif r.service == CONSOLE or r.permission is None:
                assert exposed, f"{where} is not routed to {r.service} by the Ingress"
            else:
                assert not exposed, f"{where} is internal but the Ingress routes it"


# ---------------------------------------------------------------------------------------- network policy

# Egress the services may have, besides the provider APIs: DNS, Kafka's listeners, PostgreSQL, and the console's
# calls to the other services' http port.
INTERNAL_EGRESS_PORTS = {53, 9092, 9093, 9094, 5432, int(HTTP_PORT)}
PROVIDER_URL = re.compile(r"^ARREARS_\w+_(BASE_URL|API_ENDPOINT)$")  # a provider API a service calls
OIDC_CLIENT = CONSOLE  # runs the sign-in flow: discovery and token endpoint of the OIDC issuer


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a LabelSelector matches a label set."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions", []):
        present, value = e["key"] in labels, labels.get(e["key"])
        ok = {
            "In": present and value in e.get("values", []),
            "NotIn": not present or value not in e.get("values", []),
            "Exists": present,
            "DoesNotExist": not present,
        }[e["operator"]]
        if not ok:
            return False
    return True


def pod_labels(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {
        svc: dep["spec"]["template"]["metadata"]["labels"] for svc, dep in objs(docs, "Deployment").items()
    }


def policies_for(docs: list[dict[str, Any]], svc: str, kind: str) -> list[dict[str, Any]]:
    """The rules ('ingress' or 'egress') of every NetworkPolicy that selects a service's pods."""
    labels = pod_labels(docs)[svc]
    return [
        rule
        for np in objs(docs, "NetworkPolicy").values()
        if selects(np["spec"]["podSelector"], labels)
        for rule in np["spec"].get(kind, [])
    ]


def rule_ports(rule: dict[str, Any]) -> set[int | str]:
    return {p["port"] for p in rule.get("ports", [])} or {"*"}


def test_default_deny_covers_every_pod(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        denies = [
            np
            for np in objs(docs, "NetworkPolicy").values()
            if set(np["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not np["spec"].get("ingress")
            and not np["spec"].get("egress")
        ]
        assert denies, f"{name}: no default-deny NetworkPolicy"
        for svc, labels in pod_labels(docs).items():
            assert any(selects(np["spec"]["podSelector"], labels) for np in denies), f"{name}/{svc}"
        assert any(np["spec"]["podSelector"] == {} for np in denies), (
            "the deny must cover the whole namespace"
        )


def test_every_service_may_reach_its_kafka_bootstrap_port(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        ports = {
            int(a.rsplit(":", 1)[1]) for a in config_data(docs)["ARREARS_KAFKA_BOOTSTRAP_SERVERS"].split(",")
        }
        for svc in pod_labels(docs):
            allowed = {
                p
                for rule in policies_for(docs, svc, "egress")
                if any(
                    "strimzi.io/cluster" in peer.get("podSelector", {}).get("matchLabels", {})
                    for peer in rule.get("to", [])
                )
                for p in rule_ports(rule)
            }
            assert ports <= allowed, (
                f"{name}/{svc}: Kafka bootstrap port(s) {ports} not allowed by the egress policy"
            )


def test_allowed_ingress_targets_existing_pods_and_ports(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        labels = pod_labels(docs)
        deployments = objs(docs, "Deployment")
        for np_name, np in objs(docs, "NetworkPolicy").items():
            rules = np["spec"].get("ingress", [])
            if not rules:
                continue
            targets = [svc for svc, lab in labels.items() if selects(np["spec"]["podSelector"], lab)]
            assert targets, f"{name}: {np_name} admits traffic to no pod"
            for svc in targets:
                ports = app_container(deployments[svc])["ports"]
                offered = {p["name"] for p in ports} | {p["containerPort"] for p in ports}
                for rule in rules:
                    assert rule_ports(rule) <= offered, f"{name}: {np_name} admits {svc} on a port it lacks"
                    for peer in rule.get("from", []):
                        if "podSelector" in peer and "namespaceSelector" not in peer:
                            assert any(selects(peer["podSelector"], lab) for lab in labels.values()), np_name


def _from_namespace(rule: dict[str, Any], namespace: str) -> bool:
    return any(
        selects(
            peer.get("namespaceSelector", {"matchLabels": {"-": "-"}}),
            {"kubernetes.io/metadata.name": namespace},
        )
        for peer in rule.get("from", [])
    )


def test_only_services_with_public_routes_accept_the_ingress_controller(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    public = {r.service for r in route_tables() if r.permission is None and r.path not in PROBES} | {CONSOLE}
    for name, docs in rendered.items():
        admitted = {
            svc
            for svc in pod_labels(docs)
            for rule in policies_for(docs, svc, "ingress")
            if _from_namespace(rule, INGRESS_NAMESPACE)
        }
        assert admitted == public, (
            f"{name}: ingress controller reaches {admitted}, public routes are on {public}"
        )
        routed = {
            p["backend"]["service"]["name"]
            for rule in objs(docs, "Ingress")["arrears"]["spec"]["rules"]
            for p in rule["http"]["paths"]
        }
        assert routed <= admitted, (
            f"{name}: the Ingress routes to {routed - admitted}, which the policy blocks"
        )
        for svc in pod_labels(docs):
            scrape = [
                r for r in policies_for(docs, svc, "ingress") if _from_namespace(r, MONITORING_NAMESPACE)
            ]
            assert scrape and all(rule_ports(r) == {"http"} for r in scrape), f"{name}/{svc}: /metrics"


def _to_outside(rule: dict[str, Any]) -> bool:
    """Whether an egress rule lets traffic leave the cluster (no `to`, or an ipBlock)."""
    return "to" not in rule or any("ipBlock" in peer for peer in rule["to"])


def test_egress_only_to_kafka_postgres_dns_and_provider_apis(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    callers = {
        svc for svc in topology.services() if any(PROVIDER_URL.match(v) for v in settings_vars(svc))
    } | {OIDC_CLIENT}
    assert {"ingest", "dispatcher-sms", "responses"} <= callers and "segmenter" not in callers
    for name, docs in rendered.items():
        bootstrap_port = int(
            config_data(docs)["ARREARS_KAFKA_BOOTSTRAP_SERVERS"].split(",")[0].rsplit(":", 1)[1]
        )
        for svc in pod_labels(docs):
            rules = policies_for(docs, svc, "egress")
            ports = set().union(*(rule_ports(r) for r in rules))
            assert ports <= INTERNAL_EGRESS_PORTS | {443}, f"{name}/{svc} may also reach ports {ports}"
            https_out = any(_to_outside(r) and 443 in rule_ports(r) for r in rules)
            assert https_out == (svc in callers), (
                f"{name}/{svc}: HTTPS to the internet is for provider callers"
            )
            assert bootstrap_port in ports, f"{name}/{svc} cannot reach the Kafka listener"
            assert {53, 5432} <= ports, f"{name}/{svc}: DNS and PostgreSQL"
            for r in rules:
                if _to_outside(r) and "to" in r:
                    for peer in r["to"]:
                        excluded = set(peer["ipBlock"].get("except", []))
                        private = (
                            {"fc00::/7", "fe80::/10"}  # unique-local and link-local IPv6
                            if ":" in peer["ipBlock"]["cidr"]
                            else {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"}
                        )
                        assert private <= excluded, f"private ranges: {peer}"
            if svc != CONSOLE:
                assert int(HTTP_PORT) not in ports, f"{name}/{svc} has no business calling other services"


def test_console_calls_the_services_it_may_reach(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        cfg, services = config_data(docs), objs(docs, "Service")
        urls = {k: v for k, v in cfg.items() if re.match(r"ARREARS_CONSOLE_\w+_URL$", k)}
        urls |= json.loads(cfg["ARREARS_CONSOLE_DISPATCHER_URLS"])
        assert len(urls) >= 4 + 2
        for key, url in urls.items():
            m = re.fullmatch(r"http://([a-z0-9-]+)(?::(\d+))?/?", url)
            assert m and m.group(1) in services, f"{name}: {key}={url} names no Service"
            (port,) = services[m.group(1)]["spec"]["ports"]
            assert int(m.group(2) or 80) == port["port"], f"{name}: {key}={url} misses the Service port"
        ingress_from_console = [
            r
            for r in policies_for(docs, "segmenter", "ingress")
            if any("podSelector" in p for p in r["from"])
        ]
        assert ingress_from_console, f"{name}: segmenter does not admit the console"


# --------------------------------------------------------------------------------------------- secrets


def test_no_secret_values_in_manifests(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        assert not [d for d in docs if d["kind"] == "Secret"], f"{name}: Secrets are created out of band"
        for cm_name, cm in objs(docs, "ConfigMap").items():
            for key in cm.get("data", {}):
                assert not SECRET_LIKE.search(key), f"{name}: secret-like key {key} in ConfigMap {cm_name}"
        for svc, dep in objs(docs, "Deployment").items():
            for e in app_container(dep)["env"]:
                if SECRET_LIKE.search(e["name"]) and not e["name"].endswith("_FILE"):
                    assert "value" not in e, f"{name}/{svc}: literal value for {e['name']}"
                    # the operator's secret, or (prod Kafka) the one Strimzi keeps for the service's KafkaUser
                    assert e["valueFrom"]["secretKeyRef"]["name"] in {"arrears-secrets", f"arrears-{svc}"}, e
        for path, value in walk(docs):
            if isinstance(value, str):
                assert not re.search(r"postgres(ql)?://[^/\s]*:[^@/\s]+@", value), (
                    f"{name}{path}: credentials"
                )


def test_every_secret_key_is_documented(rendered: dict[str, list[dict[str, Any]]]) -> None:
    readme = (DEPLOY / "README.md").read_text()
    keys = set()
    for docs in rendered.values():
        for path, value in walk(docs):
            if path.endswith("secretKeyRef.key") or re.search(r"secret\.items\[\d+\]\.key$", path):
                keys.add(value)
    assert {
        "database-migrator-url",
        "quo-api-key",
        "quo-webhook-signing-key",
        "gmail-credentials.json",
    } <= keys
    assert {f"database-url-{s}" for s in topology.services()} <= keys
    assert "sheets-credentials.json" in keys
    for key in keys:
        assert key in readme, f"secret key {key} is not explained in deploy/README.md"
    for var in ("ARREARS_QUO_FROM_NUMBER", "ARREARS_GMAIL_SENDER", "ARREARS_SHEETS_SPREADSHEET_ID"):
        assert var in readme, f"{var} (site ConfigMap) is not explained in deploy/README.md"


SRC_ROOTS = [ROOT / "shared/src", *sorted(ROOT.glob("services/*/src"))]


def _module_file(module: str) -> Path:
    for root in SRC_ROOTS:
        p = root.joinpath(*module.split("."))
        if p.with_suffix(".py").is_file():
            return p.with_suffix(".py")
        if (p / "__init__.py").is_file():
            return p / "__init__.py"
    raise LookupError(module)


@functools.cache
def _class_fields(module: str, name: str) -> dict[str, str]:
    """Field name -> type annotation (source text) of a pydantic settings class, read from source with `ast`
    (importing the services would pull in SQLAlchemy, Google clients etc. and cost seconds)."""
    if module == "arrears_shared.settings":
        return {f: repr(i.annotation) for f, i in getattr(settings_module, name).model_fields.items()}
    path = _module_file(module)
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    imports: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            src = ".".join([*base, node.module] if node.module else base)
            for alias in node.names:
                imports[alias.asname or alias.name] = (src, alias.name)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    if name not in classes:
        return _class_fields(*imports[name])  # re-exported from another module
    own = {
        st.target.id: ast.unparse(st.annotation)
        for st in classes[name].body
        if isinstance(st, ast.AnnAssign)
        and isinstance(st.target, ast.Name)
        and "ClassVar" not in ast.unparse(st)
    }
    fields: dict[str, str] = {}
    for b in reversed(classes[name].bases):
        if isinstance(b, ast.Name) and b.id in classes:
            fields |= _class_fields(module, b.id)
        elif isinstance(b, ast.Name) and imports.get(b.id, ("",))[0].startswith("arrears_"):
            fields |= _class_fields(*imports[b.id])
    fields |= own
    fields.pop("model_config", None)
    return fields


@functools.cache
def settings_fields(service: str) -> dict[str, str]:
    """ARREARS_* variable -> type annotation of every setting the settings classes of
    `arrears_<service>.settings` read (for responses, also those of the inbound adapters it mounts: channel
    plugins under the `arrears.inbound` entry point)."""
    modules = [f"{topology.service(service).package}.settings"]
    if service == "responses":
        modules += [ep.module for ep in entry_points(group=INBOUND_GROUP)]
    fields = {f: repr(i.annotation) for f, i in ServiceSettings.model_fields.items()}
    for module in modules:
        tree = ast.parse(_module_file(module).read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Settings"):
                fields |= _class_fields(module, node.name)
    return {f"ARREARS_{f.upper()}": ann for f, ann in fields.items()}


def settings_vars(service: str) -> frozenset[str]:
    return frozenset(settings_fields(service))


def secret_settings(service: str) -> set[str]:
    """The secrets a service reads: `SecretStr` settings and settings whose name says secret."""
    return {
        var
        for var, annotation in settings_fields(service).items()
        if SecretStr.__name__ in annotation or SECRET_LIKE.search(var)
    }


def test_settings_reader_sees_secret_types() -> None:
    assert {"ARREARS_DATABASE_URL", "ARREARS_KAFKA_SASL_PASSWORD"} <= secret_settings("segmenter")
    assert "ARREARS_PAYMENTS_STRIPE_WEBHOOK_SECRET" in secret_settings("ingest")
    assert "ARREARS_WHATSAPP_APP_SECRET" in secret_settings("responses")  # inbound adapter's settings
    assert "ARREARS_SHEETS_CREDENTIALS_FILE" in secret_settings("ingest")  # by name
    assert "ARREARS_SHEETS_WORKSHEET" not in secret_settings("ingest")


def test_settings_reader_sees_inherited_fields() -> None:
    assert "ARREARS_GMAIL_SENDER" in settings_vars("dispatcher-email")
    assert "ARREARS_QUO_FROM_NUMBER" in settings_vars("dispatcher-sms")
    assert "ARREARS_KAFKA_BOOTSTRAP_SERVERS" in settings_vars("segmenter")
    assert "ARREARS_QUO_FROM_NUMBER" not in settings_vars("segmenter")


# Secret settings deliberately not mapped into a service's pod: (service or "*", variable) -> why. A reason
# may depend on the rendered config (e.g. no SASL password without a SASL mechanism).
NOT_WIRED: dict[tuple[str, str], Callable[[dict[str, str]], str | None]] = {
    ("*", "ARREARS_AUTH_OIDC_CLIENT_SECRET"): lambda cfg: "only the console runs the OIDC sign-in flow",
    ("dispatcher-email", "ARREARS_GMAIL_TOKEN"): lambda cfg: (
        "static token for the emulator; clusters mount gmail-credentials.json"
    ),
    ("responses", "ARREARS_GMAIL_TOKEN"): lambda cfg: (
        "static token for the emulator; clusters mount gmail-credentials.json"
    ),
    ("*", "ARREARS_KAFKA_SASL_PASSWORD"): lambda cfg: (
        None if cfg.get("ARREARS_KAFKA_SASL_MECHANISM") else "no SASL in this overlay's broker settings"
    ),
}


def _wired_secrets(dep: dict[str, Any]) -> set[str]:
    """Variables a Deployment fills from a Secret: by secretKeyRef, or as the path of a file mounted from one."""
    pod = dep["spec"]["template"]["spec"]
    c = app_container(dep)
    secret_volumes = {v["name"] for v in pod["volumes"] if "secret" in v}
    secret_dirs = [m["mountPath"] for m in c["volumeMounts"] if m["name"] in secret_volumes]
    wired = set()
    for e in c["env"]:
        if "secretKeyRef" in e.get("valueFrom", {}):
            wired.add(e["name"])
        elif any(e.get("value", "").startswith(d + "/") for d in secret_dirs):
            wired.add(e["name"])
    return wired


def test_every_secret_setting_is_wired(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """A secret the code reads reaches the pod from a Secret, or is listed in NOT_WIRED with its reason."""
    for name, docs in rendered.items():
        cfg = config_data(docs)
        for svc, dep in objs(docs, "Deployment").items():
            missing = []
            for var in sorted(secret_settings(svc) - _wired_secrets(dep)):
                reason = NOT_WIRED.get((svc, var), NOT_WIRED.get(("*", var), lambda _: None))(cfg)
                if not reason:
                    missing.append(var)
            assert not missing, (
                f"{name}/{svc} reads secret settings {missing} that no Secret feeds: add them to SECRET_ENV or "
                "SECRET_FILES in deploy/gen_workloads.py (and deploy/README.md), or to NOT_WIRED with a reason"
            )


def test_config_keys_are_real_settings(rendered: dict[str, list[dict[str, Any]]]) -> None:
    any_service = frozenset().union(*(settings_vars(s) for s in topology.services()))
    for name, docs in rendered.items():
        for key in config_data(docs):
            assert key in any_service, f"{name}: {key} is not a setting any service reads"
        for svc, dep in objs(docs, "Deployment").items():
            for e in app_container(dep)["env"]:
                if not e["name"].startswith("PYTHON"):
                    assert e["name"] in settings_vars(svc), f"{svc} does not read {e['name']}"
    readme = (DEPLOY / "README.md").read_text()
    for var in set(re.findall(r"^(ARREARS_[A-Z0-9_]+)=", readme, re.M)):
        assert var in any_service, f"deploy/README.md sets {var}, which no service reads"


# ----------------------------------------------------------------------------------------------- kafka


def test_every_topic_and_dlq_has_a_kafka_topic(rendered: dict[str, list[dict[str, Any]]]) -> None:
    expected = set(topology.all_topics())
    assert "notice-due.dispatcher-sms.dlq" in expected
    for name, docs in rendered.items():
        kt = objs(docs, "KafkaTopic")
        assert {t["spec"]["topicName"] for t in kt.values()} == expected, name
        for t in kt.values():
            assert t["apiVersion"] == "kafka.strimzi.io/v1beta2"
            assert t["metadata"]["labels"]["strimzi.io/cluster"] == gen_topics.KAFKA_CLUSTER
            assert t["spec"]["replicas"] >= t["spec"]["config"]["min.insync.replicas"]


def test_keda_scaledobjects_target_deployments_and_groups(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        deployments, kafka_topics = objs(docs, "Deployment"), objs(docs, "KafkaTopic")
        scaled = objs(docs, "ScaledObject")
        declared = {s.name: s for s in topology.declared().values() if s.scaling}
        assert set(scaled) == set(declared) >= {"segmenter", "dispatcher-sms", "dispatcher-email"}, name
        bootstrap = config_data(docs)["ARREARS_KAFKA_BOOTSTRAP_SERVERS"]
        for so_name, so in scaled.items():
            target = so["spec"]["scaleTargetRef"]
            assert target["kind"] == "Deployment" and target["name"] in deployments, so_name
            assert "replicas" not in deployments[target["name"]]["spec"], "HPA-managed: no replicas field"
            assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"]
            triggers = so["spec"]["triggers"]
            assert {t["metadata"]["topic"] for t in triggers} == set(declared[target["name"]].consumes)
            for t in triggers:
                md = t["metadata"]
                assert t["type"] == "kafka"
                assert md["consumerGroup"] == target["name"] == declared[target["name"]].group
                assert md["bootstrapServers"] == bootstrap, f"{name}: KEDA and services use different brokers"
                assert int(md["lagThreshold"]) > 0
                partitions = kafka_topics[md["topic"]]["spec"]["partitions"]
                assert so["spec"]["maxReplicaCount"] <= partitions, "replicas beyond partitions sit idle"
                if name == "prod":
                    assert md["tls"] == "enable"  # sasl or certificates per variant: test_kafka_access
                    assert t["authenticationRef"]["name"] in objs(docs, "TriggerAuthentication")


# ---------------------------------------------------------------------------------------- observability


def test_metric_name_parser() -> None:
    expr = 'histogram_quantile(0.95, sum by (le, service) (rate(a_bucket{x=~"b|c"}[5m]))) > 5 and on (s) b'
    assert metric_names(expr) == {"a_bucket", "b"}
    assert metric_names("time() - max by (source) (m) > 600") == {"m"}


def test_grafana_dashboard(rendered: dict[str, list[dict[str, Any]]]) -> None:
    cm = objs(rendered["prod"], "ConfigMap")["arrears-grafana-dashboard"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (raw,) = cm["data"].values()
    dash = json.loads(raw)
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for word in ("consumed", "lag", "dead-lettered", "outbox", "provider latency", "messages sent"):
        assert word in titles, word
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        for t in p["targets"]:
            used = metric_names(t["expr"])
            assert used and used <= KNOWN_METRICS, f"{p['title']}: {used - KNOWN_METRICS}"


def test_each_service_signs_in_to_postgres_as_itself_and_only_init_containers_migrate(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Least privilege in the database: a service's container reads its own runtime role's URL; only the
    `migrate` init container reads the migrator's, and it migrates exactly that service (and iam)."""
    for name, docs in rendered.items():
        for svc, dep in objs(docs, "Deployment").items():
            spec = dep["spec"]["template"]["spec"]
            env = {e["name"]: e for e in app_container(dep)["env"]}
            assert env["ARREARS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == f"database-url-{svc}"
            assert "database-migrator-url" not in json.dumps(spec["containers"]), f"{name}/{svc}"
            (init,) = spec["initContainers"]
            assert init["name"] == "migrate" and init["image"] == app_container(dep)["image"]
            assert init["command"] == [
                "arrears",
                "migrate",
                "--service",
                "iam",
                "--service",
                "vault",
                "--service",
                svc,
                "--allow-ahead",
            ]
            (db,) = [e for e in init["env"] if e["name"] == "ARREARS_DATABASE_URL"]
            assert db["valueFrom"]["secretKeyRef"]["key"] == "database-migrator-url"
            assert init["securityContext"]["readOnlyRootFilesystem"] is True
