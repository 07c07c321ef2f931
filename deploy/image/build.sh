#!/usr/bin/env bash
# `make image`: builds the one Arrears image from the Containerfile with buildah (no daemon; chroot
# isolation, vfs storage in a private store under .arrears/image), then starts every service's command from
# the built root filesystem until it answers /healthz (deploy/image/smoke.sh).
#
# Base image: BASE_IMAGE if set; else docker.io/library/python:3.11-slim when it can be pulled; else one made
# here from Debian packages (deploy/image/base.sh), for machines that reach Debian but not that registry.
#   UV_VERSION  uv used in the build stage (the Makefile passes its pin)
#   SMOKE=0     skip the start-up check
set -euo pipefail
. "$(dirname "$0")/lib.sh"
if ! command -v buildah >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "image: buildah is not installed (apt-get install buildah)" >&2; exit 1; }
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null
fi
mkdir -p "$IMAGE_STORE"
tag="$IMAGE_NAME:$IMAGE_VERSION"
t_all="$(now)"

base="${BASE_IMAGE:-}"
if [ -z "$base" ]; then
    if err="$(bah pull --quiet --retry 0 "$DEFAULT_BASE" 2>&1 >/dev/null)"; then
        base="$DEFAULT_BASE"
    else
        echo "image: cannot pull $DEFAULT_BASE, using a base made from Debian packages:" >&2
        echo "  ${err##*$'\n'}" >&2
        "$(dirname "$0")/base.sh" "$LOCAL_BASE"
        base="$LOCAL_BASE"
    fi
fi

revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then revision="$revision-dirty"; fi
source_url="$(git remote get-url origin 2>/dev/null || true)"
# the host's trust store for the build stage's PyPI downloads (see CA_BUNDLE in the Containerfile)
host_ca="${BUILD_CA_BUNDLE:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
ca_args=()
if [ -f "$host_ca" ]; then
    ca_args=(--volume "$host_ca:/run/arrears-build-ca.pem:ro" --build-arg CA_BUNDLE=/run/arrears-build-ca.pem)
fi
t_build="$(now)"
bah bud --quiet --isolation chroot --layers=false --file Containerfile "${ca_args[@]}" \
    --build-arg BASE_IMAGE="$base" \
    --build-arg UV_VERSION="${UV_VERSION:-0.13.9}" \
    --build-arg VERSION="$IMAGE_VERSION" \
    --build-arg REVISION="$revision" \
    --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    ${source_url:+--build-arg SOURCE="$source_url"} \
    --tag "$tag" . >/dev/null
build_s="$(since "$t_build")"
bah rmi --prune >/dev/null 2>&1 || true   # the previous build of the same tag, now dangling
size="$(bah images --format '{{.Size}}' "$tag")"
echo "image: built $tag (base $base, revision $revision) in ${build_s}s, size $size"

if [ "${SMOKE:-1}" != 0 ]; then
    "$(dirname "$0")/smoke.sh" "$tag"
fi
echo "image: done in $(since "$t_all")s; store $IMAGE_STORE"
echo "  push: buildah --root $IMAGE_STORE/root --runroot $IMAGE_STORE/run --storage-driver vfs push $tag docker://$tag"
