#!/usr/bin/env bash
# Side-by-side wall times of buildah and rbuild on the same workloads, in one
# run, with ratios rbuild/buildah. Not a test: numbers depend on the machine.
# See bench/README.md for what each workload measures.
#
#   bash bench/compare.sh                       # N=3 runs per workload, median
#   N=5 RBUILD=path/to/rbuild bash bench/compare.sh
#   ONLY="hello par big" bash bench/compare.sh  # a subset of workloads
#   KEEP=1 bash bench/compare.sh                # keep the work dir (contexts, state, logs)
#
# Needs: the test registry with base images (scripts/start-registry.sh,
# scripts/make-base-images.sh), buildah (with runc), bc, and rbuild
# (built in release when RBUILD is unset and target/release/rbuild is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-10}"                # number of `RUN true` steps for the per-step cost
ONLY="${ONLY:-hello go par big thirty runtrue}"
source bench/lib.sh

want() { [[ " $ONLY " == *" $1 "* ]]; }

# ----------------------------------------------------------------- contexts
mkdf() { mkdir -p "$1"; printf '%s\n' "$2" > "$1/Dockerfile"; }
FROM="FROM $REG/library/busybox:latest"
mkdf "$work/ctx-base" "$FROM"

cp -r examples/hello "$work/ctx-hello"
cp -r examples/go-app "$work/ctx-go"

# 4 independent stages of ~1 s CPU each (on this class of machine), then a
# final stage that copies one file from each.
mkdf "$work/ctx-par" "$FROM AS a
RUN dd if=/dev/zero bs=1M count=300 2>/dev/null | md5sum > /a
$FROM AS b
RUN dd if=/dev/zero bs=1M count=300 2>/dev/null | md5sum > /b
$FROM AS c
RUN dd if=/dev/zero bs=1M count=300 2>/dev/null | md5sum > /c
$FROM AS d
RUN dd if=/dev/zero bs=1M count=300 2>/dev/null | md5sum > /d
$FROM
COPY --from=a /a /a
COPY --from=b /b /b
COPY --from=c /c /c
COPY --from=d /d /d"

# 20,000 files of 15,000 random bytes (300 MB) in 100 directories.
if want big; then
  mkdf "$work/ctx-big" "$FROM
COPY . /ctx"
  for d in $(seq -w 1 100); do
    mkdir -p "$work/ctx-big/src/d$d"
    head -c 3000000 /dev/urandom | split -b 15000 -d -a 3 - "$work/ctx-big/src/d$d/f"
  done
fi

# 30 instructions after FROM: 8 ENV, 8 RUN, 8 COPY, 6 WORKDIR.
t="$FROM"; mkdir -p "$work/ctx-30"
for i in 1 2 3 4 5 6 7 8; do
  echo "file $i" > "$work/ctx-30/f$i"
  t+=$'\n'"ENV V$i=value$i"
  t+=$'\n'"COPY f$i /data/f$i"
  t+=$'\n'"RUN echo \$V$i >> /data/all && cat /data/f$i > /dev/null"
  [[ $i -le 6 ]] && t+=$'\n'"WORKDIR /w/d$i"
done
mkdf "$work/ctx-30" "$t"

# RUN-true cost: the same Dockerfile with RUNS steps and with none.
t="$FROM"; for i in $(seq "$RUNS"); do t+=$'\n'"RUN true"; done
mkdf "$work/ctx-runN" "$t"
mkdf "$work/ctx-run0" "$FROM
LABEL bench=run0"

# ----------------------------------------------------------------- workloads
bh_v=$(buildah --version | awk '{print $3}')
rb_v=$("$RBUILD" --version 2>/dev/null | awk '{print $2}' || echo '?')
echo "rbuild $rb_v vs buildah $bh_v (runtime $BUILDAH_RUNTIME, --layers); median of $N; $(nproc) cores" >&2

for app in hello go; do
  want "$app" || continue
  ctx="$work/ctx-$app"
  src=$([[ $app == hello ]] && echo hello.sh || echo main.go)
  pair "cold build ($app, incl. pull)" "fresh @T@ cold-$app" "@T@_build cold-$app $ctx"
  # Warm state for the next two rows.
  bh_build "w-$app" "$ctx" >>"$log" 2>&1; rb_build "w-$app" "$ctx" >>"$log" 2>&1
  pair "no-change rebuild ($app)" "true" "@T@_build w-$app $ctx"
  edit="echo '// edit '\$RANDOM\$RANDOM >> $ctx/$src"
  [[ $app == hello ]] && edit="echo '# edit '\$RANDOM\$RANDOM >> $ctx/$src"
  pair "one-file-change rebuild ($app: $src)" "$edit" "@T@_build w-$app $ctx"
done

if want par; then
  pair "4 independent stages, cold (base cached)" "warm_base @T@ par" "@T@_build par $work/ctx-par"
fi

if want big; then
  pair "20k files / 300 MB COPY ., cold (base cached)" "warm_base @T@ big" "@T@_build big $work/ctx-big"
  pair "20k files / 300 MB COPY ., no change" "true" "@T@_build big $work/ctx-big"
fi

if want thirty; then
  pair "30-instruction Dockerfile, cold (base cached)" "warm_base @T@ 30" "@T@_build 30 $work/ctx-30"
fi

if want runtrue; then
  B0=$(measure "warm_base bh r0" "bh_build r0 $work/ctx-run0")
  BN=$(measure "warm_base bh rN" "bh_build rN $work/ctx-runN")
  R0=$(measure "warm_base rb r0" "rb_build r0 $work/ctx-run0")
  RN=$(measure "warm_base rb rN" "rb_build rN $work/ctx-runN")
  row "one RUN true step ((T$RUNS - T0) / $RUNS)" \
    "$(echo "scale=4; ($BN - $B0) / $RUNS" | bc)" "$(echo "scale=4; ($RN - $R0) / $RUNS" | bc)"
fi

echo
echo "| workload | buildah s | rbuild s | ratio |"
echo "|---|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
