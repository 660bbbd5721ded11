#!/usr/bin/env bash
# Install what is missing (scripts/setup_env.sh), then run the test suite.
# Extra arguments go to pytest, e.g. scripts/run_tests.sh -k rope
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=$(bash scripts/setup_env.sh)
# setup_env.sh installed the test-only transformers: its tests must run, not skip
export MMVITPE_REQUIRE_TRANSFORMERS=1
exec "$PY" -m pytest -q -p no:cacheprovider "$@" tests
