#!/usr/bin/env bash
# Set up a fresh Debian bookworm machine and build examples/hello end to end:
# install packages, start the local registry, build the busybox base image,
# build rbuild, build the example, and run the result with podman.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

bash scripts/install-deps.sh
bash scripts/start-registry.sh
ONLY=busybox bash scripts/make-base-images.sh
cargo build --release --quiet
root="${RBUILD_ROOT:-/var/lib/rbuild}"

echo "== rbuild -t hello examples/hello" >&2
./target/release/rbuild --root "$root" -t hello examples/hello
echo "== rbuild -t hello -o type=oci,dest=hello.tar examples/hello" >&2
./target/release/rbuild --root "$root" build -t hello:latest --output type=oci,dest=hello.tar examples/hello

echo "== the image, as skopeo sees it" >&2
skopeo inspect --config "oci-archive:hello.tar" | jq -c '.config | {Env, Cmd, WorkingDir}'
echo "== running it: podman run --rm oci:$root:hello:latest" >&2
podman --runtime runc --cgroup-manager cgroupfs --events-backend file run --rm \
  --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 "oci:$root:hello:latest"
echo "image: rbuild's store $root (OCI layout, name hello:latest) and ./hello.tar (OCI archive)" >&2
