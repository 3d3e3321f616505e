#!/usr/bin/env bash
# Start the test registry (Debian's docker-registry, distribution v2) on
# $RBUILD_REGISTRY (default 127.0.0.1:5000) in the background, storing data
# under $RBUILD_TEST_DIR/registry so base images survive restarts.
# Idempotent: exits 0 at once if a registry already answers there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/env.sh"

url="http://$RBUILD_REGISTRY/v2/"
up() { [[ $(curl -s -o /dev/null -w '%{http_code}' "$url" || true) == 200 ]]; }
if up; then exit 0; fi
command -v docker-registry >/dev/null || { echo "docker-registry missing: run scripts/install-deps.sh" >&2; exit 1; }

dir="$RBUILD_TEST_DIR/registry"
mkdir -p "$dir/storage"
cat > "$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: $RBUILD_REGISTRY
YAML
setsid nohup docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 </dev/null &
pid=$!
for _ in $(seq 1 100); do
  up && { echo "registry on $RBUILD_REGISTRY (pid $pid)" >&2; exit 0; }
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
echo "registry did not start; log:" >&2
cat "$dir/registry.log" >&2
exit 1
