#!/usr/bin/env bash
# Builds, from Debian packages, the base images that deploy/docker/Dockerfile and
# docker-compose.yml use, under the same tags as the registry images, for machines that
# reach no container registry (only Debian's mirror):
#
#   node:20-bookworm-slim     debootstrap minbase bookworm + this host's Node 20 binary
#                             (Debian's nodejs is 18) at /usr/local/bin/node, user node (1000)
#   redis:7.0-bookworm        minbase + Debian's redis-server (7.0), workdir /data
#   prom/prometheus:v2.42.0   minbase + Debian's prometheus (2.42), entrypoint /bin/prometheus
#
# Grafana is not packaged by Debian: grafana/grafana is not built here (compose profile
# "grafana" needs that image from a registry or a local import).
#
# Each tag is skipped when it exists. With --pull, a tag is first pulled from the registry and
# only built when the pull fails (never tried by default: this machine must not reach out).
# Downloaded .debs are kept in $RLMESH_DEBOOTSTRAP_CACHE (default /var/cache/rlmesh-debootstrap)
# so a rebuild needs no download. Needs root (debootstrap) and dockerd. About 40-60 s per image.
#
# Usage: deploy/docker/build-base-images.sh [--pull] [TAG...]   (default: every tag above)
set -euo pipefail

SUITE=bookworm
NODE_TAG="node:20-bookworm-slim"
REDIS_TAG="redis:7.0-bookworm"
PROMETHEUS_TAG="prom/prometheus:v2.42.0"
ALL_TAGS=("$NODE_TAG" "$REDIS_TAG" "$PROMETHEUS_TAG")
CACHE="${RLMESH_DEBOOTSTRAP_CACHE:-/var/cache/rlmesh-debootstrap}"
NODE_UID=1000

log() { echo "build-base-images: $*" >&2; }

pull=0
tags=()
for arg in "$@"; do
  case "$arg" in
    --pull) pull=1 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) tags+=("$arg") ;;
  esac
done
[ ${#tags[@]} -gt 0 ] || tags=("${ALL_TAGS[@]}")

command -v docker >/dev/null || { log "docker CLI not found"; exit 1; }
docker info >/dev/null 2>&1 || { log "cannot reach dockerd (is it running? permissions?)"; exit 1; }

# The Debian mirror: $RLMESH_DEBIAN_MIRROR or the one apt is configured with (deploy/lib).
# shellcheck source=../lib/debian-mirror.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/debian-mirror.sh"

WORK=""
cleanup() { [ -z "$WORK" ] || rm -rf "$WORK"; }
trap cleanup EXIT

# bootstrap INCLUDE: a minbase bookworm rootfs with the extra packages, in $WORK/rootfs.
bootstrap() {
  local include="$1"
  command -v debootstrap >/dev/null || { log "debootstrap not installed (apt-get install debootstrap)"; exit 1; }
  [ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 1; }
  mkdir -p "$CACHE"
  WORK="$(mktemp -d /tmp/rlmesh-base.XXXXXX)"
  local args=(--variant=minbase --cache-dir="$CACHE")
  [ -z "$include" ] || args+=("--include=$include")
  local mirror
  mirror="$(debian_mirror)" || exit 1
  log "debootstrap $SUITE ${include:+(+ $include) }from $mirror"
  debootstrap "${args[@]}" "$SUITE" "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORK/debootstrap.log" >&2; log "debootstrap failed"; exit 1; }
  # Images need no apt lists, docs, man pages or locales.
  local r="$WORK/rootfs"
  rm -rf "$r/var/cache/apt/archives/"*.deb "$r/var/lib/apt/lists/"* "$r/usr/share/doc" "$r/usr/share/man" \
    "$r/usr/share/info" "$r/usr/share/locale"
}

# import TAG CHANGE...: tars $WORK/rootfs into an image.
import_rootfs() {
  local tag="$1"; shift
  local changes=()
  for c in "$@"; do changes+=(--change "$c"); done
  tar -C "$WORK/rootfs" --numeric-owner -c . | docker import "${changes[@]}" \
    --change "LABEL org.rlmesh.base-image=debootstrap-$SUITE" - "$tag" >/dev/null
  rm -rf "$WORK"; WORK=""
  log "built $tag"
}

build_node() {
  local node_bin version
  node_bin="$(readlink -f "$(command -v node)")"
  version="$("$node_bin" --version)"
  case "$version" in v20.*) ;; *) log "host node is $version, the image needs Node 20"; exit 1 ;; esac
  bootstrap ""
  local r="$WORK/rootfs"
  install -D -m 0755 "$node_bin" "$r/usr/local/bin/node"
  echo "node:x:$NODE_UID:$NODE_UID::/home/node:/bin/sh" >>"$r/etc/passwd"
  echo "node:x:$NODE_UID:" >>"$r/etc/group"
  install -d -o "$NODE_UID" -g "$NODE_UID" "$r/home/node"
  import_rootfs "$NODE_TAG" "ENV NODE_VERSION=${version#v}" 'CMD ["node"]'
}

build_redis() {
  bootstrap "redis-server"
  install -d -m 0777 "$WORK/rootfs/data"
  import_rootfs "$REDIS_TAG" 'WORKDIR /data' 'EXPOSE 6379' 'CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no"]'
}

build_prometheus() {
  bootstrap "prometheus"
  install -d -m 0777 "$WORK/rootfs/prometheus"
  # Same entrypoint path and defaults as the registry image (/bin is /usr/bin on bookworm).
  import_rootfs "$PROMETHEUS_TAG" 'WORKDIR /prometheus' 'EXPOSE 9090' 'ENTRYPOINT ["/bin/prometheus"]' \
    'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
}

for tag in "${tags[@]}"; do
  if docker image inspect "$tag" >/dev/null 2>&1; then
    log "$tag exists, skipping"
    continue
  fi
  if [ "$pull" = 1 ] && docker pull "$tag" >/dev/null 2>&1; then
    log "pulled $tag"
    continue
  fi
  case "$tag" in
    "$NODE_TAG") build_node ;;
    "$REDIS_TAG") build_redis ;;
    "$PROMETHEUS_TAG") build_prometheus ;;
    *) log "no local recipe for $tag (known: ${ALL_TAGS[*]})"; exit 1 ;;
  esac
done
