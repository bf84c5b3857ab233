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

unit=$(find shared/dist services/*/dist -name '*.test.js' -not -path '*/node_modules/*' | sort)
integration=$(find test/dist -name '*.test.js' 2>/dev/null | sort)
files=$unit
[ "$mode" != unit ] && files="$unit $integration"
# shellcheck disable=SC2086
exec node --test --test-reporter=spec $files
