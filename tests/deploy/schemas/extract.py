"""Turn a CustomResourceDefinition into the JSON schema `tests/deploy/test_manifests.py` validates against.

    python tests/deploy/schemas/extract.py CRD.yaml --version v1beta2 --source "owner/repo path @ commit"

writes `<kind>_<group>_<version>.json` beside this script: the version's `openAPIV3Schema` as it is, less the
`description` texts (size) and the `status` property (written by the operator, never by a manifest), with the
source in `$comment`. The `x-kubernetes-*` keywords are kept; the test treats them as annotations.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def strip_descriptions(schema: Any) -> Any:
    """The schema without `description` keywords (a property *named* description is kept)."""
    if isinstance(schema, list):
        return [strip_descriptions(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key == "properties":
            out[key] = {name: strip_descriptions(s) for name, s in value.items()}
        else:
            out[key] = strip_descriptions(value)
    return out


def extract(crd: dict[str, Any], version: str, source: str) -> tuple[str, dict[str, Any]]:
    spec = crd["spec"]
    (ver,) = [v for v in spec["versions"] if v["name"] == version]
    schema = strip_descriptions(ver["schema"]["openAPIV3Schema"])
    schema.get("properties", {}).pop("status", None)
    kind = spec["names"]["kind"]
    name = f"{kind.lower()}_{spec['group']}_{version}.json"
    return name, {"$comment": f"{kind} {spec['group']}/{version} from {source}", **schema}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("crd", type=Path, help="the CRD YAML file (one CustomResourceDefinition)")
    ap.add_argument("--version", required=True, help="the served version to extract, e.g. v1beta2")
    ap.add_argument("--source", required=True, help="where the CRD came from: repository, path, commit")
    ap.add_argument("--out", type=Path, default=HERE, help="folder to write to (default: beside this script)")
    args = ap.parse_args(argv)
    docs = [d for d in yaml.safe_load_all(args.crd.read_text()) if d]
    (crd,) = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
    name, schema = extract(crd, args.version, args.source)
    (args.out / name).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
