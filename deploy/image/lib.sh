# Sourced by the scripts in deploy/image: one private buildah store for this checkout, daemonless and rootful
# or rootless alike (chroot isolation, vfs storage: no kernel overlay, no user namespaces, no daemon).
# Override with IMAGE_STORE=/some/dir; `make clean` removes the default one with the rest of .arrears/.

IMAGE_STORE="${IMAGE_STORE:-$PWD/.arrears/image}"
IMAGE_NAME="${IMAGE_NAME:-ghcr.io/arrears/arrears}"
IMAGE_VERSION="${IMAGE_VERSION:-0.1.0}"
DEFAULT_BASE="docker.io/library/python:3.11-slim"
LOCAL_BASE="localhost/arrears-base:bookworm-python3.11"
export BUILDAH_ISOLATION=chroot STORAGE_DRIVER=vfs

bah() {
    buildah --root "$IMAGE_STORE/root" --runroot "$IMAGE_STORE/run" --storage-driver vfs "$@"
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
