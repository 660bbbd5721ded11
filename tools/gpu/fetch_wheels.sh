#!/usr/bin/env bash
# Download, into .whl/ at the repo root, the wheels tools/gpu_check.py needs on
# the lent GPU machine: Python 3.12, torch 2.11 (CUDA 13), timm, numpy, PyYAML,
# rich, matplotlib, OpenCV and pytest are in its image; no OpenMMLab package
# is, and nothing can be fetched there. .whl/ is git-ignored through
# info/exclude (added here if missing), so it travels only when a device call
# names it in `carry`. Run it here (any Python with pip), then on the device:
#   bash tools/gpu/launch.sh        (device tool: carry [".whl"], timeout_s 420)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

WHEELS=(
  mmengine==0.10.7    # registries, BaseModule, logging: imported by every mmvitpe module
  mmcv-lite==2.1.0    # mmcv 2.1.0's Python part (mmcv.cnn); mmcv itself is sdist-only
  timm==1.0.31        # the pinned timm whose layers the schemes reuse (the image's is unpinned)
  addict==2.4.0       # mmengine's and mmcv's requirements that the image lacks ...
  termcolor==3.3.0
  yapf==0.43.0
  platformdirs==4.14.9  # ... and yapf's
)

exclude="$(git rev-parse --git-common-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"

rm -rf .whl
# The device README's command: pure-Python wheels, as pip would pick them for the image.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
ls .whl
echo "wheels: $(du -sb .whl | cut -f1) bytes; what a device call sends (tracked + untracked files + .whl):" \
  "$( (git ls-files -z --cached --others --exclude-standard; find .whl -type f -print0) |
      xargs -0 du -cb | tail -1 | cut -f1) bytes"
