"""Validate the Kubernetes manifests under deploy/kustomize without a cluster or network.

Renders base and overlays with deploy/kustomize_lite.py (cross-checked against `kubectl kustomize` when
kubectl is installed), validates core objects against the Kubernetes JSON schemas shipped by the
`kubernetes-validate` package, and checks the invariants between manifests and code: services, modules,
probes, secrets, topics + DLQs, alert metric names, KEDA targets and consumer groups.
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
from collections.abc import Iterator
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
from arrears_shared import topics, topology
from arrears_shared.inbound import ENTRY_POINT_GROUP as INBOUND_GROUP
from arrears_shared.settings import ServiceSettings

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
}
HTTP_PORT = "8000"
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# The metrics the services export (shared telemetry); alerts and dashboards may use nothing else.
COUNTERS_AND_GAUGES = {
    "arrears_events_consumed_total",
    "arrears_events_produced_total",
    "arrears_events_failed_total",
    "arrears_events_dead_lettered_total",
    "arrears_outbox_backlog",
    "arrears_consumer_lag",
    "arrears_messages_sent_total",
    "arrears_ingest_last_success_timestamp_seconds",
    "arrears_ingest_degraded",
}
HISTOGRAMS = {"arrears_handler_seconds", "arrears_provider_request_seconds"}


def service_metrics() -> set[str]:
    """Every sample name a service's own `metrics` module registers (imported: they register on import)."""
    import prometheus_client

    for svc in ("ingest", "responses", "escalation"):
        importlib.import_module(f"arrears_{svc}.metrics")
    return {
        sample.name
        for family in prometheus_client.REGISTRY.collect()
        for sample in family.samples
        if sample.name.startswith("arrears_")
    } | {
        f"{family.name}_total"
        for family in prometheus_client.REGISTRY.collect()
        if family.type == "counter" and family.name.startswith("arrears_")
    }


KNOWN_METRICS = (
    COUNTERS_AND_GAUGES
    | HISTOGRAMS
    | {f"{h}_{s}" for h in HISTOGRAMS for s in ("bucket", "sum", "count")}
    | service_metrics()
)
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring"}

SECRET_LIKE = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEY|SIGNING_KEY|DATABASE_URL|PRIVATE)", re.I)


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


kustomize_lite = _load("arrears_deploy_kustomize_lite", DEPLOY / "kustomize_lite.py")
gen_topics = _load("arrears_deploy_gen_topics", DEPLOY / "gen_topics.py")
gen_workloads = _load("arrears_deploy_gen_workloads", DEPLOY / "gen_workloads.py")


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize_lite.build(path) for name, path in TARGETS.items()}


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


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_lite_matches_kubectl_kustomize(rendered: dict[str, list[dict[str, Any]]]) -> None:
    procs = {
        name: subprocess.Popen(["kubectl", "kustomize", str(path)], stdout=subprocess.PIPE, text=True)
        for name, path in TARGETS.items()
    }
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"kubectl kustomize {name} failed"
        real = {
            (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
            for d in yaml.load_all(out, Loader=YAML_LOADER)
            if d
        }
        mine = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in rendered[name]}
        assert mine.keys() == real.keys(), name
        for key, doc in mine.items():
            assert doc == real[key], f"{name}: {key} differs from kubectl kustomize"


@functools.cache
def schema_validator(kind: str, api_version: str) -> jsonschema.Draft202012Validator:
    """The strict schema of one kind from kubernetes-validate, compiled once (its `validate()` reloads the
    multi-megabyte definitions on every call, which would make this test take seconds)."""
    mm = kubernetes_validate.utils.major_minor
    version = [v for v in kubernetes_validate.utils.all_versions() if mm(v) <= mm(K8S_VERSION)][-1]
    assert mm(version) == mm(K8S_VERSION), f"kubernetes-validate has no schemas for {K8S_VERSION}"
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = kubernetes_validate.utils.schema_contents(f"{folder}/{kind.lower()}-{api}.json", K8S_VERSION)
    defs = kubernetes_validate.utils.schema_contents(f"{folder}/_definitions.json", K8S_VERSION)
    registry = referencing.Resource.from_contents(defs) @ (
        referencing.Resource.from_contents(schema) @ referencing.Registry()
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_schema_validator_agrees_with_kubernetes_validate(rendered: dict[str, list[dict[str, Any]]]) -> None:
    dep = copy.deepcopy(objs(rendered["prod"], "Deployment")["console"])
    kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    schema_validator("Deployment", "apps/v1").validate(dep)
    app_container(dep)["livenessProbe"]["httpGet"]["paht"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)
    with pytest.raises(jsonschema.ValidationError):
        schema_validator("Deployment", "apps/v1").validate(dep)


def test_core_objects_match_kubernetes_schemas(rendered: dict[str, list[dict[str, Any]]]) -> None:
    seen = set()
    for name, docs in rendered.items():
        for d in docs:
            if d["kind"] not in CORE_KINDS:
                continue
            seen.add(d["kind"])
            errors = sorted(schema_validator(d["kind"], d["apiVersion"]).iter_errors(d), key=str)
            assert not errors, (
                f"{name}: {d['kind']}/{d['metadata']['name']}: {errors[0].message} at {list(errors[0].path)}"
            )
    assert seen == CORE_KINDS


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


def test_ingress_routes_to_existing_services(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in rendered.items():
        services = objs(docs, "Service")
        backends = {}
        for rule in objs(docs, "Ingress")["arrears"]["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                b = p["backend"]["service"]
                port_names = {port["name"] for port in services[b["name"]]["spec"]["ports"]}
                assert b["port"]["name"] in port_names, name
                backends[p["path"]] = b["name"]
        assert backends["/"] == "console"
        assert backends["/webhooks/quo"] == "responses"


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
    assert {"database-url", "quo-api-key", "quo-webhook-signing-key", "gmail-credentials.json"} <= keys
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
def _class_fields(module: str, name: str) -> frozenset[str]:
    """Field names of a pydantic settings class, read from source with `ast` (importing the services would
    pull in SQLAlchemy, Google clients etc. and cost seconds)."""
    if module == "arrears_shared.settings":
        return frozenset(getattr(settings_module, name).model_fields)
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
    fields = {
        st.target.id
        for st in classes[name].body
        if isinstance(st, ast.AnnAssign)
        and isinstance(st.target, ast.Name)
        and "ClassVar" not in ast.unparse(st)
    }
    for b in classes[name].bases:
        if isinstance(b, ast.Name) and b.id in classes:
            fields |= _class_fields(module, b.id)
        elif isinstance(b, ast.Name) and imports.get(b.id, ("",))[0].startswith("arrears_"):
            fields |= _class_fields(*imports[b.id])
    return frozenset(fields - {"model_config"})


@functools.cache
def settings_vars(service: str) -> frozenset[str]:
    """ARREARS_* variables the settings classes of `arrears_<service>.settings` read (for responses, also
    those of the inbound adapters it mounts: channel plugins under the `arrears.inbound` entry point)."""
    modules = [f"{topology.service(service).package}.settings"]
    if service == "responses":
        modules += [ep.module for ep in entry_points(group=INBOUND_GROUP)]
    fields: set[str] = set(ServiceSettings.model_fields)
    for module in modules:
        tree = ast.parse(_module_file(module).read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Settings"):
                fields |= _class_fields(module, node.name)
    return frozenset(f"ARREARS_{f.upper()}" for f in fields)


def test_settings_reader_sees_inherited_fields() -> None:
    assert "ARREARS_GMAIL_SENDER" in settings_vars("dispatcher-email")
    assert "ARREARS_QUO_FROM_NUMBER" in settings_vars("dispatcher-sms")
    assert "ARREARS_KAFKA_BOOTSTRAP_SERVERS" in settings_vars("segmenter")
    assert "ARREARS_QUO_FROM_NUMBER" not in settings_vars("segmenter")


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


def test_kafka_security_per_overlay(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert config_data(rendered["dev"])["ARREARS_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    prod = config_data(rendered["prod"])
    assert prod["ARREARS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert prod["ARREARS_KAFKA_SASL_MECHANISM"] in {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
    for dep in objs(rendered["prod"], "Deployment").values():
        c = app_container(dep)
        mounts = [m["mountPath"] for m in c["volumeMounts"]]
        assert any(prod["ARREARS_KAFKA_SSL_CAFILE"].startswith(m + "/") for m in mounts)
        env = {e["name"] for e in c["env"]}
        assert {"ARREARS_KAFKA_SASL_USERNAME", "ARREARS_KAFKA_SASL_PASSWORD"} <= env
    # more replicas in prod than in dev
    for kind, field in (("Deployment", "replicas"), ("ScaledObject", "minReplicaCount")):
        dev_total = sum(o["spec"].get(field, 0) for o in objs(rendered["dev"], kind).values())
        prod_total = sum(o["spec"].get(field, 0) for o in objs(rendered["prod"], kind).values())
        assert prod_total > dev_total, kind


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
                    assert md["sasl"] and md["tls"] == "enable"
                    assert t["authenticationRef"]["name"] in objs(docs, "TriggerAuthentication")


def test_every_service_has_a_kafka_user_whose_acls_are_its_declaration(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Least privilege from the same map the code uses: reading a topic needs it in `consumes` (the
    console's DLQ browsing aside), writing needs it in `produces` or its own dead-letter topics."""
    users = objs(rendered["prod"], "KafkaUser")
    assert set(users) == {f"arrears-{s}" for s in topology.services()}
    all_dlqs = set(topology.dlq_topics())
    for svc in topology.declared().values():
        acls = users[f"arrears-{svc.name}"]["spec"]["authorization"]["acls"]
        grants: dict[tuple[str, str], set[str]] = {}
        for a in acls:
            grants.setdefault((a["resource"]["type"], a["resource"]["name"]), set()).update(a["operations"])
        read = {n for (k, n), ops in grants.items() if k == "topic" and "Read" in ops}
        write = {n for (k, n), ops in grants.items() if k == "topic" and "Write" in ops}
        groups = {n for (k, n), ops in grants.items() if k == "group"}
        assert read == set(svc.consumes) | (all_dlqs if svc.replays_dead_letters else set()), svc.name
        assert write == set(svc.produces) | set(svc.dead_letter_topics) | (
            set(topics.EVENT_TOPICS) if svc.replays_dead_letters else set()
        ), svc.name
        assert svc.group in groups or not svc.consumes
        assert all(ops <= {"Read", "Write", "Describe", "IdempotentWrite"} for ops in grants.values())
    # the prod Deployments sign in as their own user, whose password Strimzi keeps in a Secret of that name
    for name, dep in objs(rendered["prod"], "Deployment").items():
        env = {e["name"]: e for e in app_container(dep)["env"]}
        assert env["ARREARS_KAFKA_SASL_USERNAME"] == {
            "name": "ARREARS_KAFKA_SASL_USERNAME",
            "value": f"arrears-{name}",
        }
        assert env["ARREARS_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"arrears-{name}"


# ---------------------------------------------------------------------------------------- observability


def test_metric_name_parser() -> None:
    expr = 'histogram_quantile(0.95, sum by (le, service) (rate(a_bucket{x=~"b|c"}[5m]))) > 5 and on (s) b'
    assert metric_names(expr) == {"a_bucket", "b"}
    assert metric_names("time() - max by (source) (m) > 600") == {"m"}


def test_alerts_use_only_exported_metrics_and_seed_thresholds(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    (rule,) = objs(rendered["prod"], "PrometheusRule").values()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    for alert, r in alerts.items():
        used = metric_names(r["expr"])
        assert used, alert
        assert used <= KNOWN_METRICS, f"{alert} uses unknown metrics {used - KNOWN_METRICS}"
        assert r["labels"]["severity"] in {"warning", "critical"}
        anchor = r["annotations"]["runbook"].split("#")[1]
        assert anchor == alert.lower()
    docs_md = (ROOT / "docs/deployment.md").read_text()
    for alert in alerts:
        assert f"### {alert}" in docs_md, f"no runbook entry for {alert} in docs/deployment.md"

    def expr(alert: str) -> str:
        return " ".join(alerts[alert]["expr"].split())

    # thresholds from the risk assessment's "Monitoring and Alert Thresholds"
    assert "[15m]" in expr("ArrearsHighErrorRate") and expr("ArrearsHighErrorRate").endswith("> 0.05")
    assert expr("ArrearsDataSyncDelayed").endswith("> 600")
    assert expr("ArrearsConsumerLagHigh").endswith("> 1000")
    assert expr("ArrearsOutboxBacklogHigh").endswith("> 1000")
    assert expr("ArrearsFailedCommunicationRate").endswith("> 0.02")
    assert "histogram_quantile(0.95" in expr("ArrearsProviderLatencyHigh")
    assert expr("ArrearsProviderLatencyHigh").endswith("> 5")
    assert {"ArrearsDeadLetterGrowth", "ArrearsConsumerStuck"} <= alerts.keys()


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
