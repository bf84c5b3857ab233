#!/usr/bin/env bash
# Builds the reward sandbox image offline from Debian packages (no registry pull possible here):
#   1. rlmesh-sandbox-base:<version>  debootstrap minbase bookworm + python3, `docker import` (~45 s)
#   2. rlmesh-sandbox:<version>       base + the harness (services/executor/harness), user 10001
# Idempotent: each step is skipped when its tag exists; step 2 is redone (about 1 s) when the
# harness files changed, detected through the image label rlmesh.harness.sha256.
# The version is read from services/executor/src/sandbox-image.ts so TS and this script agree.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VERSION_FILE="$ROOT/services/executor/src/sandbox-image.ts"
HARNESS_DIR="$ROOT/services/executor/harness"
VERSION="$(sed -n 's/^export const SANDBOX_IMAGE_VERSION = "\([^"]*\)";.*/\1/p' "$VERSION_FILE")"
[ -n "$VERSION" ] || { echo "build-image: SANDBOX_IMAGE_VERSION not found in $VERSION_FILE" >&2; exit 1; }
BASE_TAG="rlmesh-sandbox-base:$VERSION"
TAG="rlmesh-sandbox:$VERSION"
SANDBOX_UID=10001
SUITE=bookworm

log() { echo "build-image: $*" >&2; }

# The Debian mirror: $RLMESH_DEBIAN_MIRROR or the one apt is configured with (deploy/lib).
# shellcheck source=../lib/debian-mirror.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/debian-mirror.sh"

harness_sha() {
  (cd "$HARNESS_DIR" && find . -type f -name '*.py' | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-64
}

command -v docker >/dev/null || { log "docker CLI not found"; exit 1; }
docker info >/dev/null 2>&1 || { log "cannot reach dockerd (is it running? permissions?)"; exit 1; }

if ! docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || { log "debootstrap not installed (apt-get install debootstrap)"; exit 1; }
  MIRROR="$(debian_mirror)" || exit 1
  WORK="$(mktemp -d /tmp/rlmesh-sandbox.XXXXXX)"
  trap 'rm -rf "$WORK"' EXIT
  log "debootstrap $SUITE from $MIRROR into $WORK/rootfs"
  debootstrap --variant=minbase --include=python3 "$SUITE" "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORK/debootstrap.log" >&2; log "debootstrap failed"; exit 1; }
  R="$WORK/rootfs"
  # Non-root sandbox user; no home on the read-only rootfs (HOME points at the tmpfs).
  echo "sandbox:x:$SANDBOX_UID:$SANDBOX_UID:sandbox:/tmp:/usr/sbin/nologin" >>"$R/etc/passwd"
  echo "sandbox:x:$SANDBOX_UID:" >>"$R/etc/group"
  # Trim what a sandbox never needs: apt lists/caches, docs, man pages.
  rm -rf "$R/var/cache/apt/archives/"*.deb "$R/var/lib/apt/lists/"* "$R/usr/share/doc" "$R/usr/share/man" \
    "$R/usr/share/locale" "$R/usr/share/info"
  # setuid/setgid bits are useless under no-new-privileges; strip them anyway.
  find "$R" -xdev -perm /6000 -type f -exec chmod ug-s {} + 2>/dev/null || true
  log "docker import -> $BASE_TAG"
  tar -C "$R" --numeric-owner -c . | docker import \
    --change "USER $SANDBOX_UID" --change 'WORKDIR /tmp' --change 'CMD ["/usr/bin/python3"]' \
    - "$BASE_TAG" >/dev/null
  rm -rf "$WORK"; trap - EXIT
else
  log "$BASE_TAG exists, skipping debootstrap"
fi

SHA="$(harness_sha)"
CURRENT="$(docker image inspect -f '{{ index .Config.Labels "rlmesh.harness.sha256" }}' "$TAG" 2>/dev/null || true)"
if [ "$CURRENT" = "$SHA" ]; then
  log "$TAG exists with the current harness, nothing to do"
  exit 0
fi

OLD_ID="$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)"
log "adding harness ($SHA) -> $TAG"
CID="$(docker create --label rlmesh.build=1 "$BASE_TAG" /bin/true)"
STAGE="$(mktemp -d /tmp/rlmesh-harness.XXXXXX)"
trap 'docker rm -f "$CID" >/dev/null 2>&1 || true; rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/rlmesh/harness"
find "$HARNESS_DIR" -maxdepth 1 -type f -name '*.py' -exec cp {} "$STAGE/rlmesh/harness/" \;
chmod -R a+rX,go-w "$STAGE/rlmesh"
docker cp "$STAGE/rlmesh" "$CID:/opt/"
docker commit \
  --change "USER $SANDBOX_UID" \
  --change 'WORKDIR /tmp' \
  --change 'ENV PYTHONDONTWRITEBYTECODE=1 PYTHONHASHSEED=0' \
  --change 'CMD ["/usr/bin/python3", "-I", "-S", "/opt/rlmesh/harness/fork_server.py"]' \
  --change "LABEL rlmesh.harness.sha256=$SHA rlmesh.sandbox.version=$VERSION" \
  "$CID" "$TAG" >/dev/null
# The previous build of this tag is now untagged; drop it unless a container still uses it.
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$(docker image inspect -f '{{.Id}}' "$TAG")" ]; then
  docker rmi "$OLD_ID" >/dev/null 2>&1 || true
fi
log "built $TAG"
