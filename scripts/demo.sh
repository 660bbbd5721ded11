#!/usr/bin/env bash
# Install what is missing (scripts/setup_env.sh), then run the demo job:
# every positional-encoding scheme trained on a small built-in "where is it?"
# task (tools/pe_position_demo.py). Extra arguments go to that script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=$(bash scripts/setup_env.sh)
exec "$PY" tools/pe_position_demo.py "$@"
