#!/usr/bin/env bash
# Install what is missing (scripts/setup_env.sh), then run the main job on the
# built-in demo data (tools/run_demo.py): Mask R-CNN and UperNet with
# ViT-Adapter-T (MPVG) and an EoMT trained on CPU, evaluated with the COCO and mIoU
# metrics, predictions drawn, loss curves plotted, and a small PE study. Extra
# arguments go to run_demo.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=$(bash scripts/setup_env.sh)
exec "$PY" tools/run_demo.py "$@"
