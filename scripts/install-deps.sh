#!/usr/bin/env bash
# Install the Debian (bookworm) packages rbuild's build, examples and tests need.
# Idempotent: packages already installed are skipped. Needs root.
set -euo pipefail

PKGS=(
  # registry and consumers of our output
  docker-registry skopeo umoci podman buildah
  # runtimes for RUN (runc is the external runtime tests use; crun for --runtime crun)
  runc crun
  # base images built from Debian packages
  busybox-static mmdebstrap
  # helpers used by scripts and tests
  jq curl bc openssl apache2-utils iproute2 uidmap fuse-overlayfs libseccomp-dev pkg-config
  # git sources (ADD <git url>, --build-context name=<git url>) and their tests
  git
  # script(1): progress tests under a pseudo-terminal
  bsdutils
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) != 0 ]]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
