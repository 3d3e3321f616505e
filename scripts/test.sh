#!/usr/bin/env bash
# The whole test suite: system packages, the local registry, the base images,
# lint, unit and end-to-end tests, and the BuildKit conformance data.
# Privileged tests (namespaces, overlayfs, runc) need root.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

bash scripts/install-deps.sh
bash scripts/start-registry.sh
bash scripts/make-base-images.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# A hung test must fail the run with a message, not eat CI's whole budget.
set +e
timeout --kill-after=60s 40m cargo test --workspace --no-fail-fast 2>&1 | tee "${TMPDIR:-/tmp}/rbuild-test.log"
status=${PIPESTATUS[0]}
set -e
if [[ $status -eq 124 || $status -eq 137 ]]; then
  echo "ERROR: cargo test did not finish within 40 minutes; the last test named above as running is the one that hung" >&2
fi
if [[ -x scripts/conformance.sh ]]; then
  bash scripts/conformance.sh || status=1
fi
exit "$status"
