#!/usr/bin/env bash
# Makes a slim Python 3.11 base image from Debian bookworm packages, for machines that cannot pull
# docker.io/library/python:3.11-slim (see docs/image.md). Same shape as the official slim image where it
# matters to the Containerfile: a python3.11 on PATH, CA certificates, /etc/services, apt, no compiler.
#
# usage: deploy/image/base.sh [TAG]      (default localhost/arrears-base:bookworm-python3.11; kept if present)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
tag="${1:-$LOCAL_BASE}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if bah inspect --type image "$tag" >/dev/null 2>&1; then
    echo "base: $tag already in $IMAGE_STORE"
    exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }

work="$(mktemp -d /tmp/arrears-base.XXXXXX)"
ctr=""
cleanup() {
    [ -z "$ctr" ] || bah rm "$ctr" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
root="$work/rootfs"
t0="$(now)"

debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -30 "$work/debootstrap.log" >&2; exit 1; }
# apt (not debootstrap --include) resolves the dependencies; recommends stay out, as in the official image
chroot "$root" apt-get update -qq
DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends \
    python3.11 python3.11-venv ca-certificates netbase tzdata >"$work/apt.log" 2>&1 ||
    { tail -30 "$work/apt.log" >&2; exit 1; }
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* "$root"/debootstrap \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
rm -f "$root"/etc/resolv.conf "$root"/etc/hostname   # the runtime provides these
tar -C "$root" --numeric-owner -cf "$work/rootfs.tar" .

ctr="$(bah from scratch)"
bah add --quiet "$ctr" "$work/rootfs.tar" / >/dev/null
bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd python3.11 --label org.opencontainers.image.description="Debian bookworm minbase + python3.11" \
    "$ctr"
bah commit --quiet --rm "$ctr" "$tag" >/dev/null
ctr=""
echo "base: built $tag from Debian packages in $(since "$t0")s"
