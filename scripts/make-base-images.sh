#!/usr/bin/env bash
# Build the test base images from Debian packages and push them to the test
# registry ($RBUILD_REGISTRY, started by start-registry.sh). Nothing comes from
# Docker Hub. Images already in the registry are skipped (FORCE=1 rebuilds).
#
#   library/busybox:latest     busybox-static plus one symlink per applet
#   library/busybox:multiarch  index: linux/amd64 + a linux/arm64/v8 entry that
#                              reuses the amd64 layer (platform-selection tests)
#   library/debian:bookworm    mmdebstrap --variant=minbase
#   library/golang:bookworm    debian + golang-go (two layers, shared base)
#   library/jdk:bookworm       debian + default-jdk-headless
#   library/jre:bookworm       debian + default-jre-headless
#
# ONLY=busybox builds just the busybox images (enough for the quick tests).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/env.sh"

work="$RBUILD_TEST_DIR/base"
layout="$work/oci"
suite=bookworm
mirror="${MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}"
mirror="${mirror:-$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)}"
export SOURCE_DATE_EPOCH=1704067200
created="2024-01-01T00:00:00Z"
path_env="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

log() { echo "[base-images $(date +%T)] $*" >&2; }
for t in umoci skopeo jq mmdebstrap busybox; do
  command -v "$t" >/dev/null || { echo "$t missing: run scripts/install-deps.sh" >&2; exit 1; }
done

have() { [[ "${FORCE:-0}" != 1 ]] && skopeo inspect --raw --tls-verify=false "docker://$RBUILD_REGISTRY/$1" >/dev/null 2>&1; }
push() { log "push $2"; skopeo copy -q "${@:3}" --dest-tls-verify=false "oci:$layout:$1" "docker://$RBUILD_REGISTRY/$2"; }
in_layout() { [[ -f "$layout/index.json" ]] && jq -e --arg t "$1" '.manifests[]|select(.annotations["org.opencontainers.image.ref.name"]==$t)' "$layout/index.json" >/dev/null; }
fetch_back() {  # make sure the layout has tag $1 (pull it back from $2 if needed)
  in_layout "$1" || skopeo copy -q --src-tls-verify=false "docker://$RBUILD_REGISTRY/$2" "oci:$layout:$1"
}

# image_from_rootfs TAG BASE_TAG ROOTFS CREATED_BY: TAG = BASE_TAG + one layer
# with the difference between BASE_TAG's tree and ROOTFS ("" = from scratch).
image_from_rootfs() {
  local tag=$1 base=$2 rootfs=$3 by=$4 bundle="$work/bundle-$1"
  rm -rf "$bundle"
  if [[ -z "$base" ]]; then
    umoci new --image "$layout:$tag"
    umoci config --image "$layout:$tag" --os linux --architecture amd64 --created "$created" --no-history
  else
    umoci tag --image "$layout:$base" "$tag"
  fi
  umoci unpack --image "$layout:$tag" "$bundle"
  rm -rf "$bundle/rootfs" "$rootfs"/dev/*
  mv "$rootfs" "$bundle/rootfs"
  umoci repack --image "$layout:$tag" --history.created "$created" --history.created_by "$by" "$bundle"
  rm -rf "$bundle"
}

debootstrap_into() {  # debootstrap_into DIR [mmdebstrap args]
  local dir=$1; shift
  rm -rf "$dir"
  mmdebstrap --quiet --mode=root --variant=minbase "$@" "$suite" "$dir" ${mirror:+"$mirror"}
}

build_busybox() {
  local r="$work/rootfs-busybox"
  rm -rf "$r"; mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,var,dev,proc,sys}
  install -d -m 1777 "$r/tmp"
  install -m 0755 "$(command -v busybox)" "$r/bin/busybox"
  busybox --list-full | while read -r a; do [[ -e "$r/$a" ]] || ln -s /bin/busybox "$r/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n' >"$r/etc/group"
  find "$r" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  image_from_rootfs busybox "" "$r" "busybox-static $(dpkg-query -W -f='${Version}' busybox-static)"
  umoci config --image "$layout:busybox" --no-history --config.env "$path_env" --config.cmd sh
}

build_busybox_multiarch() {
  local tmp="$work/tmp-multi" amd cfg arm_cfg arm_mf idx
  mkdir -p "$tmp"
  blob() { echo "$layout/blobs/sha256/${1#sha256:}"; }
  put() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); mv "$1" "$layout/blobs/sha256/$d"; echo "sha256:$d $(stat -c %s "$layout/blobs/sha256/$d")"; }
  amd=$(jq -c '.manifests[]|select(.annotations["org.opencontainers.image.ref.name"]=="busybox")' "$layout/index.json")
  cfg=$(jq -r .config.digest "$(blob "$(jq -r .digest <<<"$amd")")")
  jq -cj '.architecture="arm64"|.variant="v8"' "$(blob "$cfg")" >"$tmp/cfg"
  read -r arm_cfg arm_cfg_size < <(put "$tmp/cfg")
  jq -cj --arg d "$arm_cfg" --argjson s "$arm_cfg_size" '.config.digest=$d|.config.size=$s' \
    "$(blob "$(jq -r .digest <<<"$amd")")" >"$tmp/mf"
  read -r arm_mf arm_mf_size < <(put "$tmp/mf")
  jq -ncj --argjson amd "$amd" --arg d "$arm_mf" --argjson s "$arm_mf_size" '{schemaVersion:2,
    mediaType:"application/vnd.oci.image.index.v1+json",
    manifests:[($amd|del(.annotations)|.platform={architecture:"amd64",os:"linux"}),
      {mediaType:"application/vnd.oci.image.manifest.v1+json",digest:$d,size:$s,
       platform:{architecture:"arm64",os:"linux",variant:"v8"}}]}' >"$tmp/idx"
  read -r idx idx_size < <(put "$tmp/idx")
  jq --arg d "$idx" --argjson s "$idx_size" '.manifests |= (map(select(.annotations["org.opencontainers.image.ref.name"]!="busybox-multiarch")) +
    [{mediaType:"application/vnd.oci.image.index.v1+json",digest:$d,size:$s,
      annotations:{"org.opencontainers.image.ref.name":"busybox-multiarch"}}])' "$layout/index.json" >"$tmp/index.json"
  mv "$tmp/index.json" "$layout/index.json"
  rm -rf "$tmp"
}

start=$SECONDS
mkdir -p "$work"
[[ -f "$layout/index.json" ]] || umoci init --layout "$layout"

if ! have library/busybox:latest; then log "build busybox"; build_busybox; push busybox library/busybox:latest; fi
if ! have library/busybox:multiarch; then
  log "build busybox:multiarch"; fetch_back busybox library/busybox:latest
  build_busybox_multiarch; push busybox-multiarch library/busybox:multiarch --all
fi
if [[ "${ONLY:-}" == busybox ]]; then log "busybox images ready in $((SECONDS - start)) s"; exit 0; fi

if ! have library/debian:bookworm; then
  log "build debian"; debootstrap_into "$work/rootfs-debian"
  image_from_rootfs debian "" "$work/rootfs-debian" "mmdebstrap --variant=minbase $suite"
  umoci config --image "$layout:debian" --no-history --config.env "$path_env" --config.cmd bash
  push debian library/debian:bookworm
fi

derived() {  # derived TAG PACKAGES CONFIG-ARGS...
  local tag=$1 pkgs=$2; shift 2
  have "library/$tag:bookworm" && return 0
  log "build $tag"; fetch_back debian library/debian:bookworm
  debootstrap_into "$work/rootfs-$tag" --include="$pkgs"
  image_from_rootfs "$tag" debian "$work/rootfs-$tag" "apt-get install $pkgs"
  umoci config --image "$layout:$tag" --no-history "$@"
  push "$tag" "library/$tag:bookworm"
}
derived golang golang-go,ca-certificates \
  --config.env "PATH=/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" --config.env GOPATH=/go --config.cmd bash
derived jdk default-jdk-headless --config.env "$path_env" --config.env JAVA_HOME=/usr/lib/jvm/default-java --config.cmd jshell
derived jre default-jre-headless --config.env "$path_env" --config.env JAVA_HOME=/usr/lib/jvm/default-java --config.cmd bash

log "base images ready in $((SECONDS - start)) s"
