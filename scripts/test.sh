#!/usr/bin/env bash
# Runs rlmesh's test suite with node's test runner: unit tests (next to the code) and the
# cross-service integration tests in test/. Real Redis (private servers started by the tests),
# real dockerd and real gRPC on loopback; tests fail, never skip, when those are missing.
#   scripts/test.sh          setup, then every test
#   scripts/test.sh unit     unit tests only (no setup)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
if [ "$mode" != unit ]; then bash scripts/setup.sh; fi

# Compiled tests whose source is gone (a moved or deleted file leaves its dist/ copy behind:
# tsc -b never deletes outputs) are not run.
with_source() {
  local f src
  for f in "$@"; do
    src="${f/\/dist\//\/src\/}"
    [ -f "${src%.js}.ts" ] && echo "$f"
  done
  return 0
}
# shellcheck disable=SC2046
unit=$(with_source $(find shared/dist services/*/dist -name '*.test.js' -not -path '*/node_modules/*' | sort))
# shellcheck disable=SC2046
integration=$(with_source $(find test/dist -name '*.test.js' 2>/dev/null | sort))
files=$unit
[ "$mode" != unit ] && files="$unit $integration"
# Every temp file of the run (test folders, private Redis dirs, browser logs, sandbox roots) goes
# under one folder that is removed when the run ends, pass, fail or Ctrl-C: a suite run left
# ~28 folders (~300 MB) in /tmp each time before, and a killed run left more. The port registry
# stays where concurrent meshes on this machine share it.
export RLMESH_PORT_DIR="${RLMESH_PORT_DIR:-${TMPDIR:-/tmp}/rlmesh-ports}"
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlmesh-test.XXXXXX")
# As /tmp itself: the bwrap sandbox's unprivileged side must get through to the roots made here.
chmod 1777 "$run_tmp"
trap 'rm -rf "$run_tmp"' EXIT
trap 'exit 130' INT TERM
export TMPDIR="$run_tmp"
# shellcheck disable=SC2086
node --test --test-reporter=spec $files
