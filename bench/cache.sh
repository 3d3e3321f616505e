#!/usr/bin/env bash
# A fresh CI runner with a warm registry cache: examples/go-app built from an
# empty state dir with --cache-from, against a cold build, and against
# buildah's --cache-from/--cache-to on the same registry. Not a test.
#
#   bash bench/cache.sh            # N=3 runs per measurement, median
#   N=5 RBUILD=path/to/rbuild bash bench/cache.sh
#
# Needs what bench/compare.sh needs (registry with base images, buildah,
# bc, rbuild built in release).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

ctx="$work/ctx-go"
cp -r examples/go-app "$ctx"
run_id="$(date +%s)-$$"
rb_cache="$REG/bench/rb-cache-$run_id:go"
bh_cache="$REG/bench/bh-cache-$run_id"
push_to="$REG/bench/out-$run_id"

bh() {  # bh STATE ARGS...: buildah build with its own storage
  local s=$1; shift
  buildah --root "$work/bh-$s/root" --runroot "$work/bh-$s/run" --storage-driver overlay \
    build --runtime "$BUILDAH_RUNTIME" --tls-verify=false --layers -q "$@"
}
rb() {  # rb STATE ARGS...
  local s=$1; shift
  "$RBUILD" --root "$work/rb-$s" build -q "$@"
}

echo "rbuild vs buildah $(buildah --version | awk '{print $3}'): fresh runner, warm registry cache; median of $N; $(nproc) cores" >&2

# Warm both caches once (untimed).
rb seed -t seed --cache-to "type=registry,ref=$rb_cache" "$ctx" >>"$log" 2>&1
bh seed -t seed --cache-to "$bh_cache" "$ctx" >>"$log" 2>&1

B_cold=$(measure "fresh bh cold" "bh cold -t x $ctx")
R_cold=$(measure "fresh rb cold" "rb cold -t x $ctx")
B_warm=$(measure "fresh bh warm" "bh warm -t x --cache-from $bh_cache $ctx")
R_warm=$(measure "fresh rb warm" "rb warm -t x --cache-from type=registry,ref=$rb_cache $ctx")
R_push=$(measure "fresh rb push" "rb push -t $push_to:rb --push --cache-from type=registry,ref=$rb_cache $ctx")
B_push=$(measure "fresh bh push" "bh push -t $push_to:bh --cache-from $bh_cache $ctx && buildah --root $work/bh-push/root --runroot $work/bh-push/run --storage-driver overlay push --tls-verify=false $push_to:bh")

row "cold build, empty state (go-app)" "$B_cold" "$R_cold"
row "fresh runner + warm registry cache" "$B_warm" "$R_warm"
row "fresh runner + warm cache, then push" "$B_push" "$R_push"

echo
echo "| workload | buildah s | rbuild s | ratio rbuild/buildah |"
echo "|---|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
echo
printf 'rbuild warm/cold: %.3f   buildah warm/cold: %.3f\n' \
  "$(echo "scale=4; $R_warm / $R_cold" | bc)" "$(echo "scale=4; $B_warm / $B_cold" | bc)"
