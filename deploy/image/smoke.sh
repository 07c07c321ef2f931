#!/usr/bin/env bash
# Starts every service's Deployment command (`python -m arrears_<service>`) from the built image's root
# filesystem (buildah run, chroot isolation, host network, as the image's USER) and waits for /healthz;
# then checks the CLI, the user, that no pip/uv is left and that nothing was written outside /tmp.
# usage: deploy/image/smoke.sh IMAGE
set -euo pipefail
. "$(dirname "$0")/lib.sh"
image="${1:?usage: smoke.sh IMAGE}"
here="$(cd "$(dirname "$0")" && pwd)"
envs=()
while IFS= read -r line; do
    case "$line" in '' | '#'*) ;; *) envs+=(--env "$line") ;; esac
done <"$here/smoke.env"

ctr=""
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
    if [ -n "$ctr" ]; then bah umount "$ctr" >/dev/null 2>&1 || true; bah rm "$ctr" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
ctr="$(bah from --pull=never --quiet "$image")"
mnt="$(bah mount "$ctr")"
marker="$(mktemp /tmp/arrears-smoke.XXXXXX)"
sleep 1   # file times of this run must be newer than the marker
logdir="$(mktemp -d /tmp/arrears-smoke-logs.XXXXXX)"
failed=0

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

for dir in services/*/; do
    svc="$(basename "$dir")"
    module="arrears_${svc//-/_}"
    port="$(free_port)"
    t0="$(now)"
    setsid buildah --root "$IMAGE_STORE/root" --runroot "$IMAGE_STORE/run" --storage-driver vfs \
        run --isolation chroot --network host "${envs[@]}" --env ARREARS_HTTP_PORT="$port" \
        "$ctr" -- python -m "$module" >"$logdir/$svc.log" 2>&1 &
    pid=$!
    body=""
    for _ in $(seq 1 240); do
        if body="$(curl -fsS --max-time 2 "http://127.0.0.1:$port/healthz" 2>/dev/null)"; then break; fi
        body=""
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    took="$(since "$t0")"
    ready="$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.1:$port/readyz" || true)"
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
    if [ -n "$body" ]; then
        echo "smoke: $svc: python -m $module answered /healthz in ${took}s; /readyz $ready (no Kafka, no PostgreSQL)"
    else
        echo "smoke: $svc: python -m $module did NOT answer /healthz within ${took}s; log:" >&2
        tail -20 "$logdir/$svc.log" >&2
        failed=1
    fi
done

run() { bah run --isolation chroot --network host "$ctr" -- "$@"; }
uid="$(run id -u)"
[ "$uid" != 0 ] || { echo "smoke: image runs as root" >&2; failed=1; }
run arrears --help >/dev/null && run arrears dlq --help >/dev/null &&
    echo "smoke: arrears CLI answers --help (uid $uid)" || { echo "smoke: arrears CLI failed" >&2; failed=1; }
left="$(run sh -c 'for t in uv pip pip3; do command -v $t; done; python -c "import pip; print(pip.__file__)" 2>/dev/null; true')"
if [ -n "$left" ]; then
    echo "smoke: Python build tools left in the image: $left" >&2
    failed=1
else
    echo "smoke: no uv, no pip in the image"
fi
written="$(cd "$mnt" && find . -xdev -newer "$marker" \
    ! -path './tmp' ! -path './tmp/*' ! -path './proc*' ! -path './dev*' ! -path './sys*' ! -path './run*' \
    ! -path './etc/hosts' ! -path './etc/resolv.conf' ! -path './etc/hostname' ! -path '.' | head -20)"
if [ -n "$written" ]; then
    echo "smoke: files written outside /tmp (a read-only root filesystem would refuse them):" >&2
    echo "$written" >&2
    failed=1
else
    echo "smoke: nothing written outside /tmp"
fi
rm -rf "$marker" "$logdir"
exit "$failed"
