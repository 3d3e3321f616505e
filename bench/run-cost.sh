#!/usr/bin/env bash
# The fixed cost of one `RUN true` step, per runtime, for one or more rbuild
# binaries (e.g. before and after a sandbox change):
#   (time of a --no-cache build with RUNS x `RUN true` - time with none) / RUNS
# Median of N runs each. A measurement, never a test: it does not fail on a
# slow result. Needs root and the local test registry with the busybox base.
#
#   RBUILDS="old/rbuild new/rbuild" bash bench/run-cost.sh
#   N=7 RUNS=20 RUNTIMES="embedded runc" bash bench/run-cost.sh
set -euo pipefail

RBUILDS="${RBUILDS:-target/release/rbuild}"
RUNTIMES="${RUNTIMES:-embedded runc}"
N="${N:-5}"
RUNS="${RUNS:-10}"
REG="${RBUILD_REGISTRY:-127.0.0.1:5000}"

work=$(mktemp -d "${BENCH_TMP:-/var/tmp}/rbuild-run-cost.XXXXXX")
trap 'awk -v d="$work/" "index(\$2, d) == 1 {print \$2}" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true; rm -rf "$work"' EXIT

mkdir -p "$work/ctx0" "$work/ctxN"
echo "FROM $REG/library/busybox:latest" > "$work/ctx0/Dockerfile"
{
  echo "FROM $REG/library/busybox:latest"
  for i in $(seq "$RUNS"); do echo "RUN true # $i"; done
} > "$work/ctxN/Dockerfile"

ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() {  # timed BIN STATE RUNTIME CTX -> ms of one --no-cache build
  local t0 t1
  t0=$(ms)
  "$1" --root "$2" build -q --no-cache --runtime "$3" "$4" >/dev/null 2>>"$work/log" ||
    { echo "build failed, see below" >&2; tail -20 "$work/log" >&2; exit 1; }
  t1=$(ms)
  echo $((t1 - t0))
}

echo "| rbuild | runtime | T0 ms | T$RUNS ms | per RUN ms |"
echo "|---|---|---:|---:|---:|"
for bin in $RBUILDS; do
  for rt in $RUNTIMES; do
    state="$work/state-$(basename "$(dirname "$bin")")-$rt-$RANDOM"
    timed "$bin" "$state" "$rt" "$work/ctxN" >/dev/null   # pull the base, warm up
    : > "$work/t0"; : > "$work/tn"
    for _ in $(seq "$N"); do   # interleaved, so drifting load hits both alike
      timed "$bin" "$state" "$rt" "$work/ctx0" >> "$work/t0"
      timed "$bin" "$state" "$rt" "$work/ctxN" >> "$work/tn"
    done
    t0=$(median < "$work/t0"); tn=$(median < "$work/tn")
    echo "| $bin | $rt | $t0 | $tn | $(echo "scale=1; ($tn - $t0) / $RUNS" | bc) |"
  done
done
