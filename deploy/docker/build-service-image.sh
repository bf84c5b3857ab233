#!/usr/bin/env bash
# Builds the rlmesh service image (deploy/docker/Dockerfile) from the host's built repository,
# streamed to dockerd as a tar context that holds only what the services run:
#   package.json, node_modules (less dev tools and other platforms' onnxruntime binaries),
#   shared/ and services/*/ (package.json, dist/ without tests and maps, bin/), proto/ (with
#   proto/gen/descriptor-set.binpb, the descriptor set gRPC reflection serves), models/, datasets/, deploy/docker/Dockerfile.
# Needs the base image node:20-bookworm-slim (deploy/docker/build-base-images.sh) and a built
# repo (`npm run setup`). Tag: rlmesh:<package.json version>, or $RLMESH_IMAGE.
#
# Usage: deploy/docker/build-service-image.sh            prints the tag on stdout when done
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
log() { echo "build-service-image: $*" >&2; }

VERSION="$(node -p 'require("./package.json").version')"
TAG="${RLMESH_IMAGE:-rlmesh:$VERSION}"
SERVICES=(api rollout executor learner)
# The CLI package (health checks in compose, submit) rides along; it is not a service.
PACKAGES=(cli)

docker image inspect node:20-bookworm-slim >/dev/null 2>&1 \
  || { log "base image node:20-bookworm-slim missing: run deploy/docker/build-base-images.sh"; exit 1; }
[ -d node_modules ] || { log "node_modules missing: run npm run setup first"; exit 1; }
[ -f shared/dist/index.js ] || { log "shared/dist missing: run npm run build first"; exit 1; }
[ -f proto/gen/descriptor-set.binpb ] || { log "proto/gen/descriptor-set.binpb missing (gRPC reflection serves it): run npm run build first, with protoc installed"; exit 1; }
for s in "${SERVICES[@]}"; do
  [ -f "services/$s/dist/main.js" ] || { log "services/$s/dist/main.js missing: run npm run build first (is the service written yet?)"; exit 1; }
done

# onnxruntime-node ships binaries for every platform; keep this architecture's only.
case "$(uname -m)" in
  x86_64) ORT_KEEP=x64 ;;
  aarch64) ORT_KEEP=arm64 ;;
  *) log "unsupported architecture $(uname -m)"; exit 1 ;;
esac
ORT_DROP=(darwin win32)
[ "$ORT_KEEP" = x64 ] && ORT_DROP+=(linux/arm64) || ORT_DROP+=(linux/x64)

paths=(package.json node_modules shared/package.json shared/dist proto models deploy/docker/Dockerfile)
[ -d datasets ] && paths+=(datasets)
for s in "${SERVICES[@]}"; do
  paths+=("services/$s/package.json" "services/$s/dist")
  [ -d "services/$s/bin" ] && paths+=("services/$s/bin")
done
for s in "${PACKAGES[@]}"; do
  [ -f "services/$s/dist/main.js" ] || { log "services/$s/dist missing: run npm run build first"; exit 1; }
  paths+=("services/$s/package.json" "services/$s/dist" "services/$s/bin")
done

excludes=(
  --exclude='*.test.js' --exclude='*.test.d.ts' --exclude='*.map' --exclude='*.tsbuildinfo'
  --exclude=node_modules/typescript --exclude=node_modules/eslint --exclude='node_modules/eslint-*'
  --exclude=node_modules/@eslint --exclude=node_modules/@typescript-eslint --exclude=node_modules/typescript-eslint
  --exclude=node_modules/prettier --exclude=node_modules/@types --exclude=node_modules/.cache
  --exclude=node_modules/@rlmesh/test
)
for d in "${ORT_DROP[@]}"; do excludes+=("--exclude=node_modules/onnxruntime-node/bin/napi-v*/$d"); done

log "building $TAG from the host's built repo"
# Files are owned by root and read-only for the service user inside the image.
# The classic builder takes a tar on stdin as the context (BuildKit needs the buildx plugin).
errlog="$(mktemp)"
trap 'rm -f "$errlog"' EXIT
tar -C "$ROOT" --owner=0 --group=0 --mode='u+rwX,go+rX,go-w' "${excludes[@]}" -cf - "${paths[@]}" \
  | DOCKER_BUILDKIT=0 docker build --quiet -f deploy/docker/Dockerfile --label "org.rlmesh.version=$VERSION" -t "$TAG" - \
    >/dev/null 2>"$errlog" || { grep -v -e DEPRECATED -e BuildKit -e 'environment-variable' "$errlog" >&2; log "docker build failed"; exit 1; }
log "built $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
echo "$TAG"
