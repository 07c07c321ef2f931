"""The PrometheusRule under test.

- `promtool test rules` runs the unit tests in tests/deploy/alerts/ against the rule's groups: for every
  alert one case that fires (just over its threshold) and one that stays silent (just under it, evaluated
  after the rule's `for`), so a changed threshold, window or label breaks a test.
- Every alert links a runbook section that exists (GitHub's heading anchors, as tests/test_docs.py computes them).
- Expressions use only metrics the code exports (plus Prometheus' own `up`), with label values the code emits.
- Every service has a "down" alert, on the labels the PodMonitor gives its pods' `up` series.

promtool comes from Debian's `prometheus` package; `.ci/run` installs it, so it is never skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import yaml
from arrears_shared import telemetry, topology
from arrears_shared.events import DeliveryStatus, Intent
from test_docs import _anchors as github_anchors  # the docs' own link check: GitHub's heading anchors
from test_manifests import COUNTERS_AND_GAUGES, HISTOGRAMS, KNOWN_METRICS, metric_names

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy/kustomize/base"
RULE_FILE = BASE / "prometheusrule.yaml"
ALERT_TESTS = Path(__file__).resolve().parent / "alerts"
PROMETHEUS_SERIES = {"up"}  # written by Prometheus itself for every scrape target
# label values the rules may match, from the code that sets them
EMITTED_LABEL_VALUES = {"status": {s.value for s in DeliveryStatus}, "intent": {i.value for i in Intent}}
DURATION = re.compile(r"(\d+)([smhdw])")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def load_rule() -> dict[str, Any]:
    return yaml.safe_load(RULE_FILE.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in load_rule()["spec"]["groups"] for r in g["rules"] if "alert" in r]


def alerts() -> dict[str, list[dict[str, Any]]]:
    """Rules by alert name (one alert may have several rules, e.g. one `absent()` per service)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in alert_rules():
        out.setdefault(r["alert"], []).append(r)
    return out


def seconds(duration: str) -> int:
    parts = DURATION.findall(duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"unsupported duration {duration!r}"
    return sum(int(n) * SECONDS[u] for n, u in parts)


def rule_test_files() -> list[Path]:
    files = sorted(ALERT_TESTS.glob("*.yaml"))
    assert files, f"no promtool rule tests in {ALERT_TESTS}"
    return files


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: install Debian's `prometheus` package (.ci/run does)"
    return path


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """The rule's groups as a plain Prometheus rules file, next to copies of the unit-test files (promtool
    resolves `rule_files` relative to the test file)."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": load_rule()["spec"]["groups"]}))
    for f in rule_test_files():
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_rules(promtool: str, rules_dir: Path) -> None:
    proc = run([promtool, "check", "rules", "rules.yaml"], rules_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(alert_rules())} rules found" in proc.stdout


def test_promtool_unit_tests_pass(promtool: str, rules_dir: Path) -> None:
    proc = run([promtool, "test", "rules", *(f.name for f in rule_test_files())], rules_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_unit_tests_can_fail(promtool: str, rules_dir: Path) -> None:
    """The silent cases sit right at the thresholds: lowering one by a hair makes its silent case fire."""
    rules = rules_dir / "rules.yaml"
    text = rules.read_text()
    assert text.count("> 1800") == 2  # processing delay, outbox publish delay
    rules.write_text(text.replace("> 1800", "> 1799"))
    proc = run([promtool, "test", "rules", "pipeline.yaml"], rules_dir)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "a delay of exactly 30 minutes stays silent" in out
    assert "an outbox event unpublished for 30 minutes stays silent" in out


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    """Silent cases count only when evaluated after the rule's `for` (before it, silence proves nothing)."""
    rules = alerts()
    fires: set[str] = set()
    silent: set[str] = set()
    for f in rule_test_files():
        doc = yaml.safe_load(f.read_text())
        assert doc["rule_files"] == ["rules.yaml"], f
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                name = check["alertname"]
                assert name in rules, f"{f.name}: {case['name']!r} tests an alert the rule does not have"
                if check.get("exp_alerts"):
                    fires.add(name)
                elif seconds(check["eval_time"]) > max(seconds(r.get("for", "0s")) for r in rules[name]):
                    silent.add(name)
    assert not rules.keys() - fires, f"alerts without a firing case: {sorted(rules.keys() - fires)}"
    assert not rules.keys() - silent, f"alerts without a silent case: {sorted(rules.keys() - silent)}"


def test_every_alert_links_a_runbook_section_that_exists() -> None:
    for r in alert_rules():
        link = r["annotations"]["runbook_url"]
        path, _, anchor = link.partition("#")
        doc = ROOT / path
        assert doc.is_file() and anchor, f"{r['alert']}: runbook_url {link!r} is not <doc>#<section>"
        assert anchor in github_anchors(doc), f"{r['alert']}: no section #{anchor} in {path}"
        assert anchor == r["alert"].lower(), f"{r['alert']}: link its own section"
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]


def test_alerts_use_only_exported_metrics_and_seed_thresholds() -> None:
    rule = load_rule()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    known = KNOWN_METRICS | PROMETHEUS_SERIES
    for r in alert_rules():
        used = metric_names(r["expr"])
        assert used, r["alert"]
        assert used <= known, f"{r['alert']} uses unknown metrics {used - known}"
        assert r["labels"]["severity"] in {"warning", "critical"}

    def expr(alert: str) -> str:
        (r,) = alerts()[alert]
        return " ".join(r["expr"].split())

    # thresholds from the risk assessment's "Monitoring and Alert Thresholds"
    assert "[15m]" in expr("ArrearsHighErrorRate") and expr("ArrearsHighErrorRate").endswith("> 0.05")
    assert expr("ArrearsDataSyncDelayed").endswith("> 600")
    assert expr("ArrearsConsumerLagHigh").endswith("> 1000")
    assert expr("ArrearsOutboxBacklogHigh").endswith("> 1000")
    assert expr("ArrearsFailedCommunicationRate").endswith("> 0.02")
    assert expr("ArrearsProcessingDelayed").endswith("> 1800")
    assert expr("ArrearsOutboxPublishDelayed").endswith("> 1800")
    assert expr("ArrearsDataAccuracyDegraded").endswith("> 0.01")
    assert "> 1.1 *" in expr("ArrearsComplaintRateIncrease")
    for latency in ("ArrearsProviderLatencyHigh", "ArrearsApiLatencyHigh"):
        assert "histogram_quantile(0.95" in expr(latency) and expr(latency).endswith("> 5")
    assert {"ArrearsDeadLetterGrowth", "ArrearsConsumerStuck", "ArrearsTargetDown"} <= alerts().keys()


def test_the_listed_metrics_are_exported() -> None:
    """The hand-kept lists of test_manifests.py name metrics the shared telemetry really registers."""
    assert telemetry.HTTP_SECONDS  # imported: the shared metrics are registered
    families = {(f.name, f.type) for f in prometheus_client.REGISTRY.collect()}
    for name in COUNTERS_AND_GAUGES:
        assert (name.removesuffix("_total"), "counter" if name.endswith("_total") else "gauge") in families, (
            name
        )
    for name in HISTOGRAMS:
        assert (name, "histogram") in families, name


def test_label_matchers_use_values_the_code_emits() -> None:
    """E.g. the failed-communication alert once matched statuses (undelivered, bounced, rejected) that no
    code ever sets: it could not fire."""
    for r in alert_rules():
        for label, op, value in re.findall(r'\b(\w+)\s*(=~|=)\s*"([^"]*)"', r["expr"]):
            if label in EMITTED_LABEL_VALUES:
                values = set(value.split("|")) if op == "=~" else {value}
                assert values <= EMITTED_LABEL_VALUES[label], (
                    f"{r['alert']}: {label} values {values - EMITTED_LABEL_VALUES[label]} are never emitted"
                )


def test_every_service_has_a_down_alert_on_the_labels_the_pod_monitor_sets() -> None:
    down = alerts()["ArrearsServiceDown"]
    assert sorted(r["labels"]["service"] for r in down) == sorted(topology.services())
    for r in down:
        assert (
            " ".join(r["expr"].split())
            == f'absent(up{{job="arrears", service="{r["labels"]["service"]}"}} == 1)'
        )
    # the PodMonitor names the job after app.kubernetes.io/part-of and copies app.kubernetes.io/name to `service`
    monitor = yaml.safe_load((BASE / "podmonitor.yaml").read_text())
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/part-of"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert {
        "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
        "targetLabel": "service",
    } in endpoint.get("relabelings", [])
    selector = monitor["spec"]["selector"]["matchLabels"]
    for svc in topology.services():
        docs = yaml.safe_load_all((BASE / "services" / f"{svc}.yaml").read_text())
        (dep,) = [d for d in docs if d and d["kind"] == "Deployment"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), svc
        assert labels["app.kubernetes.io/name"] == svc and labels["app.kubernetes.io/part-of"] == "arrears"
