#!/usr/bin/env bash
# Install what is missing (scripts/setup_env.sh), then run the test suite.
# Extra arguments go to pytest, e.g. scripts/run_tests.sh -k rope
# One worker per core, at most 4 (pytest-xdist; each holds a few GiB at its peak), each
# test file on one worker (its module fixtures run once); MMVITPE_TEST_WORKERS=N sets the
# number, 1 runs the tests in this process.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cores=$(nproc)
WORKERS=${MMVITPE_TEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}
if ! [[ $WORKERS =~ ^[1-9][0-9]*$ ]]; then
    echo "run_tests.sh: MMVITPE_TEST_WORKERS=$WORKERS must be a positive integer" >&2
    exit 2
fi
PY=$(bash scripts/setup_env.sh)
# setup_env.sh installed the test-only transformers: its tests must run, not skip
export MMVITPE_REQUIRE_TRANSFORMERS=1
if [[ $WORKERS -gt 1 ]]; then set -- -n "$WORKERS" --dist loadfile "$@"; fi
exec "$PY" -m pytest -q -p no:cacheprovider "$@" tests
