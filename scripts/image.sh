#!/usr/bin/env bash
# The container image: a bundle on a Debian minbase root filesystem, built with podman and no
# base image pulled from anywhere. The root filesystem is made locally (scripts/minbase.sh, cached
# in build/work/minbase) and `podman import`ed once per package set as localhost/edge-mm-base;
# deploy/image/Containerfile adds the non-root user, the bundle (/opt/edge-mm) and the health
# check. Tag: edge-mm:<flavour> from the bundle's bundle_info.json (edge-mm:cpu for `make
# bundle-cpu`). --save FILE also writes a docker-archive named docker.io/library/edge-mm:<flavour>,
# the name Kubernetes gives `image: edge-mm:cpu` (k3s: `k3s ctr images import FILE` on each node).
# Needs root, podman, runc and debootstrap (scripts/system_deps.sh installs them).
# --arch arm64: an arm64 bundle (make bundle-arm64) on the arm64 minbase (scripts/arm64_lib.sh),
# tagged edge-mm:<flavour>-arm64; its RUN steps run under qemu-user through binfmt_misc.
#
#   scripts/image.sh [BUNDLE (default dist/edge-mm)] [--tag NAME] [--save FILE] [--arch arm64]
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=dist/edge-mm TAG= SAVE= ARCH=
while [ $# -gt 0 ]; do
  case $1 in
    --tag) TAG=$2; shift 2 ;;
    --save) SAVE=$(realpath -m "$2"); shift 2 ;;
    --arch) ARCH=$2; shift 2 ;;
    -*) echo "image: unknown option $1" >&2; exit 2 ;;
    *) BUNDLE=$1; shift ;;
  esac
done
BUNDLE=$(realpath "$BUNDLE")
[ -x "$BUNDLE/edge-mm" ] && [ -f "$BUNDLE/bundle_info.json" ] \
  || { echo "image: $BUNDLE is not a bundle folder (make bundle-cpu writes dist/edge-mm)" >&2; exit 2; }
command -v podman >/dev/null || { echo "image: podman is missing (scripts/system_deps.sh installs it)" >&2; exit 2; }
# This project's podman settings (runc, no default rlimits or pids limit), not the user's.
export CONTAINERS_CONF=$PWD/deploy/image/containers.conf
info() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" "$BUNDLE/bundle_info.json" | head -n1; }
FLAVOUR=$(info flavour)
TAG=${TAG:-edge-mm:${FLAVOUR:-cpu}${ARCH:+-$ARCH}}
SECONDS=0

case $ARCH in
  "") ROOTFS=$(bash scripts/minbase.sh) ;;
  arm64) . scripts/arm64_lib.sh && arm64_binfmt && ROOTFS=$(arm64_minbase) ;;
  *) echo "image: --arch $ARCH: only arm64 (or none: this machine's)" >&2; exit 2 ;;
esac
# One base image per package set of the root filesystem: a rebuilt minbase gets a new tag. Left
# out: man pages, translations and changelogs (about 40 MB; the copyright files stay).
. "$ROOTFS/etc/os-release"
BASE=localhost/edge-mm-base:$VERSION_CODENAME${ARCH:+-$ARCH}-$(sha256sum "$ROOTFS/var/lib/dpkg/status" | cut -c1-12)
# The tree is read under its lock only when the base is imported: scripts/nopython_check.sh and
# arm64_check.sh copy a bundle into it while they run (excluded below); an existing base needs no
# wait for them, so the arm64 image builds while the chroot proof runs.
if ! podman image exists "$BASE"; then
  exec 9>"$ROOTFS.lock"
  flock 9
  if ! podman image exists "$BASE"; then
    echo "image: podman import $ROOTFS as $BASE" >&2
    tar -C "$ROOTFS" --one-file-system --numeric-owner \
      --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* --exclude=./opt/edge-mm --exclude=./.cpuinfo \
      --exclude=./root/.cache --exclude=./var/cache/apt/archives/*.deb --exclude=./var/lib/apt/lists/* \
      --exclude=./usr/share/man/* --exclude=./usr/share/info/* --exclude=./usr/share/locale/* \
      --exclude='./usr/share/doc/*/changelog*' -c . \
      | podman import --quiet ${ARCH:+--arch "$ARCH"} --message "debootstrap --variant=minbase $VERSION_CODENAME" - "$BASE" >/dev/null
  fi
  flock -u 9
  exec 9>&-
fi

echo "image: podman build $TAG from $BUNDLE on $BASE" >&2
podman build --quiet --format docker --pull=never ${ARCH:+--arch "$ARCH"} --build-arg "BASE=$BASE" \
  --build-context "bundle=$BUNDLE" \
  --label "org.opencontainers.image.title=edge-mm" \
  --label "org.opencontainers.image.version=$(info edge_mm_version)" \
  --label "edge-mm.flavour=$FLAVOUR" --label "edge-mm.torch=$(info torch_version)" \
  -f deploy/image/Containerfile -t "$TAG" deploy/image >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$TAG")
echo "image: $TAG built in $SECONDS s, $((size / 1024 / 1024)) MiB" >&2

if [ -n "$SAVE" ]; then
  name=docker.io/library/${TAG##*/}
  podman tag "$TAG" "$name"
  rm -f "$SAVE"
  podman save --quiet --format docker-archive -o "$SAVE" "$name"
  podman untag "$(podman image inspect --format '{{.Id}}' "$TAG")" "$name"
  echo "image: wrote $SAVE ($name, $(du -h "$SAVE" | cut -f1))" >&2
fi
echo "$TAG"
