#!/usr/bin/env bash
# Export of one big layer: rbuild vs buildah writing the same tree to an OCI
# archive as gzip. Prints throughput (MB of tree per second), the ratio
# rbuild/buildah, and peak memory (max RSS from /usr/bin/time -v). Not a
# test: the numbers depend on the machine. See bench/README.md.
#
#   bash bench/export.sh                  # 300 MB / 20,000 files, N=3 (median)
#   SIZE_MB=1200 N=1 bash bench/export.sh # bigger layer (peak memory must not grow)
#   ONLY="rb-export bh-commit" bash bench/export.sh  # a subset of measurements
#   KEEP=1 bash bench/export.sh           # keep the work dir
#
# Needs: root, buildah (with runc), openssl, awk, bc, /usr/bin/time, taskset,
# and rbuild (built in release when RBUILD is unset and missing).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB="${SIZE_MB:-300}"   # tree size in MB (10^6 bytes)
FILES="${FILES:-20000}"     # number of files (in 100 directories)
EXAMPLE="${EXAMPLE:-}"      # path to the bench_layer example binary (optional)
# N, RBUILD, BUILDAH_RUNTIME, the work dir, $log, umount_under, median.
source bench/lib.sh
for tool in buildah openssl awk bc taskset; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is not installed (apt-get install -y time)" >&2; exit 1; }

# ----------------------------------------------------------------- fixture
# 100 directories × FILES/100 files. Per directory, half the files are text
# (lines drawn from a small vocabulary by a fixed-seed LCG: gzip shrinks them
# about 3×) and half are AES-CTR keystream with a fixed key (incompressible).
# The same SIZE_MB and FILES give the same bytes on every machine.
ctx="$work/ctx"; tree="$ctx/tree"
per_dir=$((FILES / 100))
file_size=$((SIZE_MB * 1000000 / FILES))
half=$((per_dir / 2 * file_size))
echo "generating $FILES files of $file_size bytes ($SIZE_MB MB) in $tree" >&2
t0=$(date +%s%N)
for d in $(seq -w 1 100); do
  mkdir -p "$tree/d$d"
  {
    awk -v seed="$d" -v n="$half" 'BEGIN {
      split("layer snapshot digest blob manifest config overlay commit diff tar gzip zstd index lease prune export " \
            "return if else for while static const void int char struct fn let mut impl pub use mod match Some None Ok Err " \
            "error warning info debug trace the of and to in is that for it with as was on be at by this had not", w, " ");
      nw = length(w); x = seed * 7919; out = 0;
      while (out < n) {
        line = "";
        k = 4 + (x % 9);
        for (i = 0; i < k; i++) {
          x = (69069 * x + 1) % 4294967296;  # exact in doubles
          line = line w[1 + int(x / 65536) % nw] ((x % 5 == 0) ? sprintf("_%d", x % 1000) : "") " ";
        }
        line = line sprintf("// %04x", x % 65536);
        line = line "\n";
        if (out + length(line) > n) line = substr(line, 1, n - out);
        printf "%s", line; out += length(line);
      }
    }'
    head -c $(((per_dir - per_dir / 2) * file_size)) /dev/zero \
      | openssl enc -aes-128-ctr -K "$(printf '%032x' "$((10#$d))")" -iv "$(printf '%032x' 0)"
  } | split -b "$file_size" -d -a 4 - "$tree/d$d/f"
done
printf 'FROM scratch\nCOPY tree /tree\n' > "$ctx/Dockerfile"
bytes=$(du -sb --apparent-size "$tree" | awk '{print $1}')
mb=$(echo "scale=1; $bytes / 1000000" | bc)
echo "fixture: $(find "$tree" -type f | wc -l) files, $mb MB, in $(( ($(date +%s%N) - t0) / 1000000 )) ms; gzip -6 of one directory: $(cat "$tree"/d001/* | gzip -6 | wc -c) of $(cat "$tree"/d001/* | wc -c) bytes" >&2

# ----------------------------------------------------------------- timing
# timed OUT CMD: run the shell command CMD (exported functions allowed)
# under /usr/bin/time -v; append "wall_seconds max_rss_kb cpu_seconds" to OUT.
# The max RSS is that of the largest process in the command (bash -c itself
# is ~4 MB); CPU is user + system of all of them.
timed() {
  local out=$1 cmd=$2 t0 t1 rss cpu
  echo "== $cmd" >>"$log"
  t0=$(date +%s%N)
  /usr/bin/time -v -o "$work/time.txt" bash -c "$cmd" >>"$log" 2>&1 || { echo "FAILED: $cmd (see $log)" >&2; tail -20 "$log" >&2; exit 1; }
  t1=$(date +%s%N)
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$work/time.txt")
  echo "$(echo "scale=3; ($t1 - $t0) / 1000000000" | bc) $rss $cpu" >> "$out"
}
# spec NAME SETUP CMD [AFTER]: register a measurement (skipped unless NAME
# is in ONLY, when ONLY is set). run_all then runs N rounds; each round runs
# every measurement once, in order (SETUP and AFTER untimed, CMD timed), so
# that changes in machine load hit all of them alike.
declare -a SPECS=()
spec() {
  if [[ -n "${ONLY:-}" && " $ONLY " != *" $1 "* ]]; then return; fi
  SPECS+=("$1"$'\t'"$2"$'\t'"$3"$'\t'"${4:-true}")
}
run_all() {
  local round s name setup cmd after
  for round in $(seq "$N"); do
    for s in "${SPECS[@]}"; do
      IFS=$'\t' read -r name setup cmd after <<<"$s"
      [[ $round == 1 ]] && : > "$work/m-$name"
      echo "== setup: $setup" >>"$log"
      eval "$setup" >>"$log" 2>&1 || { echo "setup FAILED: $setup (see $log)" >&2; tail -20 "$log" >&2; exit 1; }
      timed "$work/m-$name" "$cmd"
      eval "$after"
      echo "round $round: $name $(tail -1 "$work/m-$name" | awk '{printf "%ss wall, %ss CPU, %d MB", $1, $3, $2 / 1024}'); load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    done
  done
  for s in "${SPECS[@]}"; do
    name=${s%%$'\t'*}
    local f="$work/m-$name"
    eval "M_${name//-/_}=\"$(awk '{print $1}' "$f" | median) $(awk '{print $3}' "$f" | median) $(awk '{print $2}' "$f" | sort -n | tail -1)\""
  done
}

declare -a ROWS=()
row() {  # row TITLE NAME [BUILDAH_NAME]: a table row from the medians (wall, CPU) and max RSS
  local secs cpu rss bsecs bcpu brss r="" rc=""
  [[ -n "$(eval echo "\${M_${2//-/_}:-}")" ]] || return 0
  read -r secs cpu rss <<<"$(eval echo "\$M_${2//-/_}")"
  if [[ -n "${3:-}" && -n "$(eval echo "\${M_${3//-/_}:-}")" ]]; then
    read -r bsecs bcpu brss <<<"$(eval echo "\$M_${3//-/_}")"
    r=$(echo "scale=2; $secs / $bsecs" | bc); rc=$(echo "scale=2; $cpu / $bcpu" | bc)
  fi
  ROWS+=("$(printf '| %-56s | %6.2f | %6.1f | %6.2f | %6.1f | %5d | %5s | %5s |' "$1" \
    "$secs" "$(echo "scale=1; $mb / $secs" | bc)" "$cpu" "$(echo "scale=1; $mb / $cpu" | bc)" \
    "$((rss / 1024))" "$r" "$rc")")
}

# ----------------------------------------------------------------- rbuild
export RBUILD work ctx tree BUILDAH_RUNTIME
rb() { "$RBUILD" --root "$work/rb" "$@"; }
rb1() { taskset -c 0 "$RBUILD" --root "$work/rb" "$@"; }   # one CPU: one compression thread
rb_fresh() { umount_under "$work/rb"; rm -rf "$work/rb"; }
# The step result (the snapshot) cached, no gzip blob of it yet: the timed
# command then only re-checks the context, makes the layer and writes the tar.
rb_prepared() { rb_fresh; rb build -q -o "type=oci,dest=$work/rb-plain.tar,compression=uncompressed" "$ctx"; }
export -f rb rb1
out="type=oci,dest=$work/rb.tar"
echo "rbuild $("$RBUILD" --version | awk '{print $2}'), $(nproc) cores, N=$N" >&2

size_of() { tar -tvf "$1" | awk '{print $3}' | sort -n | tail -1; }   # the largest blob: the layer
spec rb-cold "rb_fresh" "rb build -q -o $out $ctx"
spec rb-cached "rb build -q -o $out $ctx" "rb build -q -o $out $ctx"
spec rb-export "rb_prepared" "rb build -q -o $out $ctx" 'RB_GZ_SIZE=$(size_of $work/rb.tar)'
spec rb-export-1cpu "rb_prepared" "rb1 build -q -o $out $ctx"
spec rb-export-l1 "rb_prepared" "rb build -q -o $out,compression-level=1 $ctx" 'RB_GZ1_SIZE=$(size_of $work/rb.tar)'
spec rb-export-l1-1cpu "rb_prepared" "rb1 build -q -o $out,compression-level=1 $ctx"
spec rb-export-l9 "rb_prepared" "rb build -q -o $out,compression-level=9 $ctx"
spec rb-export-zstd "rb_prepared" "rb build -q -o $out,compression=zstd $ctx"

# ----------------------------------------------------------------- buildah
bh() { buildah --root "$work/bh/root" --runroot "$work/bh/run" --storage-driver overlay "$@"; }
bh_fresh() { bh rm --all >/dev/null 2>&1 || true; umount_under "$work/bh"; rm -rf "$work/bh"; }
# A working container holding the tree, so that only the commit is timed.
bh_prepared() {
  bh_fresh
  local c; c=$(bh from scratch)
  bh copy "$c" "$tree" /tree >/dev/null
  echo "$c" > "$work/bh-container"
  rm -f "$work/bh.tar"
}
export -f bh
echo "buildah $(buildah --version | awk '{print $3}') (storage driver overlay, runtime $BUILDAH_RUNTIME)" >&2
spec bh-cold "bh_fresh; rm -f $work/bh-build.tar" \
  "bh build -q --runtime \$BUILDAH_RUNTIME --disable-compression=false -t oci-archive:$work/bh-build.tar $ctx"
spec bh-commit "bh_prepared" \
  "bh commit -q --disable-compression=false \$(cat $work/bh-container) oci-archive:$work/bh.tar" \
  'BH_GZ_SIZE=$(size_of $work/bh.tar)'

RB_GZ_SIZE=? RB_GZ1_SIZE=? BH_GZ_SIZE=?
run_all
bh_fresh

# ----------------------------------------------------------------- report
row "whole build, cold (COPY + layer + archive), gzip -6" rb-cold bh-cold
row "export only (layer + archive), gzip -6, 2 threads" rb-export bh-commit
row "export only, gzip -6, 1 CPU (taskset)" rb-export-1cpu bh-commit
row "export only, gzip -1, 2 threads" rb-export-l1 bh-commit
row "export only, gzip -1, 1 CPU (taskset)" rb-export-l1-1cpu bh-commit
row "export only, gzip -9, 2 threads" rb-export-l9 bh-commit
row "export only, zstd -3, 2 threads" rb-export-zstd bh-commit
row "rebuild, all cached (context re-check + archive)" rb-cached
row "buildah build (FROM scratch, COPY, commit to oci-archive)" bh-cold
row "buildah commit to oci-archive (gzip)" bh-commit
first() { echo "${1:-}"; }
layer_only() {  # wall seconds of NAME minus the all-cached rebuild
  local a b; a=$(eval first "\${M_${1//-/_}:-}"); b=$(first ${M_rb_cached:-})
  if [[ -n "$a" && -n "$b" ]]; then echo "scale=2; $a - $b" | bc; else echo "?"; fi
}

echo
echo "$FILES files, $mb MB; median of $N; $(nproc) cores; load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
echo "Layer blobs: rbuild gzip -6 $RB_GZ_SIZE bytes, gzip -1 $RB_GZ1_SIZE bytes; buildah $BH_GZ_SIZE bytes."
echo "Layer making alone (export only - all-cached rebuild, wall s): gzip -6 $(layer_only rb-export), on 1 CPU $(layer_only rb-export-1cpu); gzip -1 $(layer_only rb-export-l1), on 1 CPU $(layer_only rb-export-l1-1cpu)."
echo
echo "| measurement | wall s | MB/s | CPU s | MB/CPU-s | max RSS MB | wall ratio | CPU ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"

if [[ -n "$EXAMPLE" ]]; then
  echo
  echo "in-process (cache crate, no CLI), same tree:"
  BENCH_TREE="$tree" "$EXAMPLE"
fi
