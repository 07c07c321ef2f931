"""Render the Arrears kustomizations without the kustomize binary or any network access.

Implements exactly the subset of kustomize the files under `deploy/kustomize/` use and refuses everything
else (so a new field cannot be silently ignored):

- `resources`: YAML files (multi-document) and directories holding a kustomization
- `configMapGenerator` with `files` / `literals` and `options.disableNameSuffixHash: true`
- `patches`: strategic-merge patches from `path` or inline `patch`, with or without a `target`
  (kind, name as an anchored regular expression, namespace, labelSelector `k=v[,k=v]`)
- `namespace`, `labels` (`pairs`, `includeTemplates`; not `includeSelectors`), `images`

The CI test compares its output with `kubectl kustomize` whenever kubectl is installed.

    python deploy/kustomize_lite.py deploy/kustomize/overlays/prod   # prints the rendered YAML
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "configMapGenerator",
    "generatorOptions",
    "patches",
    "namespace",
    "labels",
    "images",
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
    "ClusterTriggerAuthentication",
}
# Strategic-merge keys of the Kubernetes list fields our patches touch (from the OpenAPI
# x-kubernetes-patch-merge-key annotations). Other lists are replaced, as kustomize does for CRDs.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class KustomizeError(ValueError):
    pass


def load_docs(path: Path) -> list[Doc]:
    with path.open() as fh:
        docs = [d for d in yaml.load_all(fh, Loader=_Loader) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d:
            raise KustomizeError(f"{path}: every document must be a Kubernetes object")
    return docs


def _kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            return directory / name
    raise KustomizeError(f"{directory}: no kustomization file")


def build(directory: str | Path) -> list[Doc]:
    """Render the kustomization in `directory` to a list of objects."""
    directory = Path(directory)
    kfile = _kustomization_file(directory)
    k = yaml.load(kfile.read_text(), Loader=_Loader) or {}
    unknown = set(k) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{kfile}: kustomize_lite does not implement {sorted(unknown)}")

    docs: list[Doc] = []
    for entry in k.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            docs.extend(build(target))
        elif target.is_file():
            docs.extend(load_docs(target))
        else:
            raise KustomizeError(f"{kfile}: resource {entry!r} not found")

    global_opts = k.get("generatorOptions", {})
    for gen in k.get("configMapGenerator", []):
        docs.append(_config_map(directory, gen, global_opts))

    _check_unique(docs, kfile)

    for p in k.get("patches", []):
        _apply_patch(directory, p, docs)

    if "namespace" in k:
        for d in docs:
            if d["kind"] == "Namespace":
                d["metadata"]["name"] = k["namespace"]
            elif d["kind"] not in CLUSTER_SCOPED:
                d["metadata"]["namespace"] = k["namespace"]

    for spec in k.get("labels", []):
        if spec.get("includeSelectors"):
            raise KustomizeError(f"{kfile}: labels.includeSelectors is not implemented")
        pairs = {str(a): str(b) for a, b in spec["pairs"].items()}
        for d in docs:
            d["metadata"].setdefault("labels", {}).update(pairs)
            if spec.get("includeTemplates") and d["kind"] in WORKLOAD_KINDS:
                tmeta = d["spec"]["template"].setdefault("metadata", {})
                tmeta.setdefault("labels", {}).update(pairs)

    for img in k.get("images", []):
        for d in docs:
            _set_image(d, img)
    return docs


def _check_unique(docs: list[Doc], where: Path) -> None:
    seen = set()
    for d in docs:
        ident = (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
        if ident in seen:
            raise KustomizeError(f"{where}: duplicate resource {ident}")
        seen.add(ident)


def _config_map(directory: Path, gen: Doc, global_opts: Doc) -> Doc:
    opts = {**global_opts, **gen.get("options", {})}
    if not opts.get("disableNameSuffixHash"):
        raise KustomizeError(
            f"configMapGenerator {gen['name']}: only disableNameSuffixHash: true is implemented"
        )
    unknown = set(gen) - {"name", "files", "literals", "options"}
    if unknown:
        raise KustomizeError(f"configMapGenerator {gen['name']}: {sorted(unknown)} not implemented")
    data: dict[str, str] = {}
    for f in gen.get("files", []):
        key, _, rel = f.partition("=") if "=" in f else (Path(f).name, "", f)
        data[key] = (directory / rel).read_text()
    for lit in gen.get("literals", []):
        key, _, value = lit.partition("=")
        data[key] = value
    meta: Doc = {"name": gen["name"]}
    if opts.get("labels"):
        meta["labels"] = {str(a): str(b) for a, b in opts["labels"].items()}
    if opts.get("annotations"):
        meta["annotations"] = {str(a): str(b) for a, b in opts["annotations"].items()}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def _apply_patch(directory: Path, p: Doc, docs: list[Doc]) -> None:
    if "path" in p:
        text = (directory / p["path"]).read_text()
    elif "patch" in p:
        text = p["patch"]
    else:
        raise KustomizeError(f"patch entry without path or patch: {p}")
    if set(p) - {"path", "patch", "target"}:
        raise KustomizeError(f"patch options {sorted(set(p) - {'path', 'patch', 'target'})} not implemented")
    patches = [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    for patch in patches:
        if not isinstance(patch, dict):
            raise KustomizeError("JSON 6902 patches are not implemented; use a strategic-merge patch")
        if "target" in p:
            targets = [d for d in docs if _matches(d, p["target"])]
        else:
            targets = [
                d
                for d in docs
                if d["kind"] == patch["kind"]
                and d["metadata"]["name"] == patch["metadata"]["name"]
                and patch["metadata"].get("namespace", d["metadata"].get("namespace"))
                == d["metadata"].get("namespace")
            ]
        if not targets:
            raise KustomizeError(f"patch matches no resource: {p.get('path') or p.get('target')}")
        body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind", "metadata")}
        meta = {k: v for k, v in patch.get("metadata", {}).items() if k in ("labels", "annotations")}
        for d in targets:
            merged = strategic_merge(d, {**body, **({"metadata": meta} if meta else {})})
            d.clear()
            d.update(merged)


def _matches(d: Doc, target: Doc) -> bool:
    unknown = set(target) - {"kind", "name", "namespace", "labelSelector", "group", "version"}
    if unknown:
        raise KustomizeError(f"patch target fields {sorted(unknown)} not implemented")
    group, _, version = d["apiVersion"].rpartition("/")
    if "kind" in target and d["kind"] != target["kind"]:
        return False
    if "group" in target and group != target["group"]:
        return False
    if "version" in target and version != target["version"]:
        return False
    if "name" in target and not re.fullmatch(target["name"], d["metadata"]["name"]):
        return False
    if "namespace" in target and d["metadata"].get("namespace") != target["namespace"]:
        return False
    if "labelSelector" in target:
        labels = d["metadata"].get("labels", {})
        for cond in target["labelSelector"].split(","):
            key, sep, value = cond.partition("=")
            if not sep or "!" in key or labels.get(key.strip()) != value.strip():
                return False
    return True


def strategic_merge(base: Any, patch: Any, field: str | None = None) -> Any:
    """Strategic merge of `patch` into `base` (a new object; inputs are not modified)."""
    if isinstance(patch, dict) and isinstance(base, dict):
        if any(k.startswith("$") for k in patch):
            raise KustomizeError(
                f"patch directives {[k for k in patch if k.startswith('$')]} not implemented"
            )
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = strategic_merge(out[key], value, key)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(patch, list) and isinstance(base, list) and field in MERGE_KEYS:
        # as kubectl does without a $setElementOrder directive: the patch's items (merged into their base
        # item) in patch order, then the base items the patch does not name
        key = MERGE_KEYS[field]
        named = {item.get(key) for item in patch}
        merged = []
        for item in patch:
            match = next((b for b in base if b.get(key) == item.get(key)), None)
            merged.append(copy.deepcopy(item) if match is None else strategic_merge(match, item, None))
        return merged + [copy.deepcopy(b) for b in base if b.get(key) not in named]
    return copy.deepcopy(patch)


def _set_image(d: Doc, img: Doc) -> None:
    def pod_specs(obj: Doc) -> list[Doc]:
        spec = obj.get("spec", {})
        if obj["kind"] == "Pod":
            return [spec]
        if obj["kind"] in WORKLOAD_KINDS:
            return [spec.get("template", {}).get("spec", {})]
        if obj["kind"] == "CronJob":
            return [spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})]
        return []

    for pod in pod_specs(d):
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            name, tag, digest = _split_image(c.get("image", ""))
            if name != img["name"]:
                continue
            new_name = img.get("newName", name)
            if "digest" in img:
                c["image"] = f"{new_name}@{img['digest']}"
            elif "newTag" in img:
                c["image"] = f"{new_name}:{img['newTag']}"
            else:
                c["image"] = new_name + (f"@{digest}" if digest else f":{tag}" if tag else "")


def _split_image(image: str) -> tuple[str, str | None, str | None]:
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = name.rpartition(":")
        return name, tag, digest or None
    return name, None, digest or None


def render_yaml(directory: str | Path) -> str:
    return "".join("---\n" + yaml.safe_dump(d, sort_keys=False, width=1000) for d in build(directory))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} KUSTOMIZATION_DIR")
    sys.stdout.write(render_yaml(sys.argv[1]))
