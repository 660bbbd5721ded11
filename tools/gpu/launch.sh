#!/usr/bin/env bash
# The GPU check in one device call, from the repo root (wheels first: tools/gpu/fetch_wheels.sh):
#   device tool run: command "bash tools/gpu/launch.sh", carry [".whl"], timeout_s 420
# Installs the carried wheels into /tmp/site (the device README's command), then
# runs tools/gpu_check.py --device cuda, whose report and logs land in $OUT.
# Extra arguments go to gpu_check.py (e.g. --parts adapter for a rerun of one part).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
PYTHONPATH="$PWD:$PYTHONPATH" PYTHONUNBUFFERED=1 exec python3 tools/gpu_check.py --device cuda --out "${OUT:-work_dirs/gpu_check}" "$@"
