# Shared by the bench scripts (source it from the repository root): the
# settings (N, RBUILD, REG, BUILDAH_RUNTIME), a work dir removed on exit,
# per-state build helpers for both tools, `measure` (median of N timed runs)
# and `row` (a table row with the ratio rbuild/buildah).
[[ -f scripts/env.sh ]] && source scripts/env.sh
N="${N:-3}"                       # runs per measurement; the median is reported
RBUILD="${RBUILD:-target/release/rbuild}"
REG="${RBUILD_REGISTRY:-127.0.0.1:5000}"
BUILDAH_RUNTIME="${BUILDAH_RUNTIME:-runc}"
if [[ ! -x "$RBUILD" ]]; then cargo build --release --quiet; fi
RBUILD=$(realpath "$RBUILD")

work=$(mktemp -d "${BENCH_TMP:-/var/tmp}/rbuild-bench.XXXXXX")
# buildah's overlay driver leaves its layer mounts behind; unmount before rm.
umount_under() {
  awk -v d="$1/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}
if [[ -z "${KEEP:-}" ]]; then
  trap 'umount_under "$work"; rm -rf "$work" 2>/dev/null || true' EXIT
else
  echo "work dir: $work" >&2
fi
log="$work/log"; : > "$log"

# ----------------------------------------------------------------- tools
# Every "state" name gets its own storage: $work/bh-NAME (buildah) and
# $work/rb-NAME (rbuild). buildah runs with --layers so that it caches steps
# like docker/rbuild do (without it a buildah rebuild re-runs everything).
bh_build() {  # bh_build STATE CONTEXT
  buildah --root "$work/bh-$1/root" --runroot "$work/bh-$1/run" --storage-driver overlay \
    build --runtime "$BUILDAH_RUNTIME" --tls-verify=false --layers -q -t bench "$2"
}
rb_build() {  # rb_build STATE CONTEXT
  "$RBUILD" --root "$work/rb-$1" build -q -t bench "$2"
}
fresh() {  # fresh TOOL STATE: remove the state dir
  if [[ $1 == bh ]]; then
    # buildah leaves overlay mounts behind only on failure; unmount defensively.
    buildah --root "$work/bh-$2/root" --runroot "$work/bh-$2/run" --storage-driver overlay \
      rm --all >/dev/null 2>&1 || true
  fi
  umount_under "$work/$1-$2"
  rm -rf "$work/$1-$2"
}
warm_base() {  # warm_base TOOL STATE: fresh state holding only the busybox base image
  fresh "$1" "$2"
  "${1}_build" "$2" "$work/ctx-base"
}

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) exit 1; print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# measure SETUP CMD: N times (run SETUP untimed, then time CMD); print the median seconds.
measure() {
  local setup=$1 cmd=$2 i t0 t1
  for i in $(seq "$N"); do
    echo "== setup: $setup" >>"$log"
    eval "$setup" >>"$log" 2>&1 || { echo "setup FAILED: $setup (see $log)" >&2; tail -20 "$log" >&2; exit 1; }
    echo "== run $i: $cmd" >>"$log"
    t0=$(now)
    eval "$cmd" >>"$log" 2>&1 || { echo "FAILED: $cmd (log below)" >&2; tail -20 "$log" >&2; exit 1; }
    t1=$(now)
    echo "scale=3; ($t1 - $t0) / 1000000000" | bc
  done | median
}

declare -a ROWS=()
row() {  # row NAME BUILDAH_SECONDS RBUILD_SECONDS
  local r; r=$(echo "scale=3; $3 / $2" | bc -l 2>/dev/null || echo nan)
  ROWS+=("$(printf '| %-46s | %9.3f | %9.3f | %6.2f |' "$1" "$2" "$3" "$r")")
  echo "${ROWS[-1]}" >&2   # progress while the run goes on
}
# pair NAME SETUP-TEMPLATE CMD-TEMPLATE: @T@ is replaced by bh/rb in both.
pair() {
  local name=$1 s=$2 c=$3 B R
  B=$(measure "${s//@T@/bh}" "${c//@T@/bh}")
  R=$(measure "${s//@T@/rb}" "${c//@T@/rb}")
  row "$name" "$B" "$R"
}
