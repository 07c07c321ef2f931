#!/bin/sh
# CycloneDX 1.5 SBOM of what the image installs: uv's own exporter reads the committed uv.lock with the same
# selection as deploy/image/install.sh (every workspace package, no dev group), so the bill lists exactly the
# locked runtime packages with versions, purls and hashes. Run from the workspace root.
# usage: deploy/image/sbom.sh OUTPUT.json      (UV: uv binary, default uv on PATH)
set -eu
out="${1:?usage: sbom.sh OUTPUT.json}"
mkdir -p "$(dirname "$out")"
"${UV:-uv}" export --frozen --no-dev --all-packages --format cyclonedx1.5 --no-progress --quiet \
    --output-file "$out" >/dev/null
echo "sbom: $out ($(grep -c '"purl"' "$out") packages)"
