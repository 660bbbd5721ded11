#!/usr/bin/env bash
# For a CUDA machine without network: download the wheels on a machine with
# network, copy the tree, then run tools/gpu/launch.sh there.
# Downloads into .whl/ at the repo root the wheels tools/gpu_check.py needs on
# top of a Python 3.12 x86-64 Linux install that has torch with CUDA, timm,
# numpy, PyYAML, rich, matplotlib, OpenCV and pytest but no OpenMMLab package.
# .whl/ is kept out of git (info/exclude, added here if missing). Any Python
# with pip runs this script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

WHEELS=(
  mmengine==0.10.7    # registries, BaseModule, logging: imported by every mmvitpe module
  mmcv-lite==2.1.0    # mmcv 2.1.0's Python part (mmcv.cnn); mmcv itself is sdist-only
  timm==1.0.31        # the pinned timm whose layers the schemes reuse (an installed one may differ)
  addict==2.4.0       # mmengine's and mmcv's requirements missing there ...
  termcolor==3.3.0
  yapf==0.43.0
  platformdirs==4.14.9  # ... and yapf's
)

exclude="$(git rev-parse --git-common-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"

rm -rf .whl
# Wheels as pip would pick them for CPython 3.12 on x86-64 Linux.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
ls .whl
echo "wheels: $(du -sb .whl | cut -f1) bytes; the tree to copy (tracked + untracked files + .whl):" \
  "$( (git ls-files -z --cached --others --exclude-standard; find .whl -type f -print0) |
      xargs -0 du -cb | tail -1 | cut -f1) bytes"
