#!/usr/bin/env bash
# tools/gpu_check.py on a CUDA machine without network, from the repo root, after
# tools/gpu/fetch_wheels.sh filled .whl/ on a machine with network and the tree
# was copied here. Installs the wheels into /tmp/site (no index, no dependencies:
# the machine's own torch stays), then runs tools/gpu_check.py --device cuda.
# Extra arguments go to gpu_check.py, e.g. --out DIR, or --parts adapter to rerun one part.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
PYTHONPATH="$PWD:$PYTHONPATH" PYTHONUNBUFFERED=1 exec python3 tools/gpu_check.py --device cuda "$@"
