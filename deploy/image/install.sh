#!/bin/sh
# The one recipe for the image's Python environment: every workspace package and its runtime dependencies,
# exactly as locked in uv.lock (--frozen: never re-resolved), no dev group, installed as regular (not
# editable) packages so the environment does not need the source tree, bytecode compiled now because the
# running container's root filesystem is read-only.
#
# Run from the workspace root by the Containerfile's build stage and by tests/deploy/test_image.py.
# usage: deploy/image/install.sh VENV_DIR
#   UV      uv binary (default: uv on PATH)
#   PYTHON  interpreter the environment is built on (default: python3.11 on PATH; the base image's:
#           /usr/local/bin/python3.11 in python:3.11-slim, /usr/bin/python3.11 in Debian's)
set -eu
venv="${1:?usage: install.sh VENV_DIR}"
uv="${UV:-uv}"
python="${PYTHON:-$(command -v python3.11)}"

UV_PROJECT_ENVIRONMENT="$venv" UV_PYTHON_DOWNLOADS=never "$uv" sync \
    --frozen --no-dev --all-packages --no-editable --compile-bytecode --no-progress \
    --python "$python"

# google-api-python-client bundles ~600 discovery documents (about 110 MB); the code builds only Gmail v1
# from them (arrears_shared.providers.gmail: static_discovery=True). Keep that one.
KEEP_DISCOVERY="gmail.v1.json"
for docs in "$venv"/lib/python3.11/site-packages/googleapiclient/discovery_cache/documents; do
    [ -d "$docs" ] || continue
    find "$docs" -type f -name '*.json' ! -name "$KEEP_DISCOVERY" -delete
done
