#!/usr/bin/env bash
# Idempotent machine + repo setup for rlmesh on Debian (run as root on a fresh machine):
# installs missing system packages, starts dockerd, installs npm dependencies, builds the
# TypeScript, and builds the sandbox image when it is missing. Quick when all is in place.
#
# Environment:
#   RLMESH_SKIP_APT=1          do not apt-get install (you installed the packages yourself)
#   RLMESH_SKIP_DOCKER=1       do not start dockerd or build the sandbox image
#   RLMESH_ORT_INSTALL_CUDA=1  let onnxruntime-node download its CUDA libraries (GPU hosts with
#                              network access; by default setup skips that download)
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# python3-torch: the test-only reference forward of imported HF checkpoints; chromium: the
# console and trace-viewer browser tests.
APT_PACKAGES=(redis-server docker.io docker-compose debootstrap python3 iproute2 prometheus bubblewrap protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf python3-torch python3-numpy chromium)
if [ "${RLMESH_SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "setup: missing Debian packages: ${missing[*]} — install them as root (apt-get install ${missing[*]}) or rerun as root" >&2
      exit 1
    fi
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if [ "${RLMESH_SKIP_DOCKER:-0}" != 1 ]; then
  if ! docker info >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
      echo "setup: dockerd is not running and this is not root; start Docker and rerun" >&2
      exit 1
    fi
    log "starting dockerd (log: /var/log/rlmesh-dockerd.log)"
    (setsid dockerd >/var/log/rlmesh-dockerd.log 2>&1 &)
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "setup: dockerd did not start; see /var/log/rlmesh-dockerd.log" >&2; tail -20 /var/log/rlmesh-dockerd.log >&2; exit 1; }
  fi
fi

stamp=node_modules/.rlmesh-install-stamp
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  log "npm ci"
  # onnxruntime-node's postinstall would download CUDA libraries from outside the npm registry;
  # its installer reads ONNXRUNTIME_NODE_INSTALL (skip | cuda12). An environment variable rather
  # than an .npmrc key, which npm 11 warns about on every command ("Unknown project config").
  if [ "${RLMESH_ORT_INSTALL_CUDA:-0}" = 1 ]; then
    ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci --no-audit --no-fund --loglevel=error
  else
    ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error
  fi
  touch "$stamp"
fi

log "build (proto codegen + tsc -b)"
node scripts/gen-proto.mjs >/dev/null
node_modules/.bin/tsc -b

if [ "${RLMESH_SKIP_DOCKER:-0}" != 1 ] && [ -x deploy/sandbox/build-image.sh ]; then
  bash deploy/sandbox/build-image.sh
fi
log "ready"
