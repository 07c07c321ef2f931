"""Rules every route of every service follows, checked on the apps themselves (no hand-written list):
lists are paged with a capped `limit`; nobody can name the actor of an action in a request; every service
that accepts changes from people keeps an audit log."""

from __future__ import annotations

from typing import Any

import pytest
from arrears_cli.commands.security import _SHAPE_ONLY_ENV
from arrears_shared import topology
from arrears_shared.service import ServiceHost

ACTOR_NAMES = {"actor", "user", "username", "by", "approved_by", "loaded_by", "who"}


@pytest.fixture(scope="module")
def documents(monkeypatch_module: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    import importlib

    for k, v in _SHAPE_ONLY_ENV.items():
        monkeypatch_module.setenv(k, v)
    out = {}
    for svc in topology.services():
        module = importlib.import_module(f"arrears_{svc.replace('-', '_')}.__main__")
        out[svc] = ServiceHost(module.definition()).build_app().openapi()
    return out


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _is_list(doc: dict[str, Any], op: dict[str, Any]) -> bool:
    content = op.get("responses", {}).get("200", {}).get("content", {})
    schema = _resolve(doc, content.get("application/json", {}).get("schema", {}))
    if schema.get("type") == "array":
        return True
    items = _resolve(doc, schema.get("properties", {}).get("items", {}))
    return items.get("type") == "array"


def _operations(documents: dict[str, dict[str, Any]]) -> Any:
    for svc, doc in documents.items():
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                yield svc, doc, f"{method.upper()} {path}", method, op


def test_every_list_is_paged_with_a_capped_limit(documents: dict[str, dict[str, Any]]) -> None:
    lists, unpaged = 0, []
    for svc, doc, label, method, op in _operations(documents):
        if method != "get" or not _is_list(doc, op):
            continue
        lists += 1
        limit = next((p for p in op.get("parameters", []) if p["name"] == "limit"), None)
        if limit is None or "maximum" not in limit["schema"]:
            unpaged.append(f"{svc} {label}")
    assert lists >= 15, lists
    assert not unpaged, f"lists without a capped `limit` query parameter: {unpaged}"


def test_no_request_can_name_its_own_actor(documents: dict[str, dict[str, Any]]) -> None:
    offenders = []
    for svc, doc, label, _, op in _operations(documents):
        names = {p["name"].lower() for p in op.get("parameters", [])}
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if body:
            names |= {n.lower() for n in _resolve(doc, body).get("properties", {})}
        if names & ACTOR_NAMES:
            offenders.append(f"{svc} {label}: {sorted(names & ACTOR_NAMES)}")
    assert not offenders, f"the actor is the authenticated caller, never a request field: {offenders}"


def test_services_taking_changes_from_people_keep_an_audit_log(documents: dict[str, dict[str, Any]]) -> None:
    for svc, doc in documents.items():
        writes = [
            f"{m} {p}"
            for p, ops in doc["paths"].items()
            for m, op in ops.items()
            if m != "get" and op.get("x-arrears-permission") is not None
        ]
        if writes:
            assert "/audit" in doc["paths"], f"{svc} accepts {writes} but serves no /audit"
