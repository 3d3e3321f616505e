#!/usr/bin/env bash
# Run the BuildKit conformance suite of rbuild-frontend (parser dumps, negative
# cases, line spans, shell lexer tables). Data: $REPO/../shared/conformance,
# overridable with RBUILD_CONFORMANCE_DIR. Prints "N passed, N failed".
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export RBUILD_CONFORMANCE_DIR="${RBUILD_CONFORMANCE_DIR:-$REPO/../shared/conformance}"
if [ ! -d "$RBUILD_CONFORMANCE_DIR/buildkit" ]; then
  echo "conformance data not found at $RBUILD_CONFORMANCE_DIR/buildkit" >&2
  exit 1
fi
cd "$REPO"
set +e
out="$(cargo test -q -p rbuild-frontend --test conformance -- --nocapture 2>&1)"
rc=$?
set -e
printf '%s\n' "$out" | grep -E '^(FAIL |[0-9]+ passed, [0-9]+ failed$)' || printf '%s\n' "$out"
exit $rc
