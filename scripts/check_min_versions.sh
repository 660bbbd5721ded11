#!/usr/bin/env bash
# Check the lower bounds that setup.py declares: install exactly the lowest versions of
# requirements/core.txt (torch, timm, mmengine) and mmcv-lite at mmcv's lowest version
# into a separate virtual environment, then run the core there: the package imports, and
# the PE-scheme and ViT-Adapter tests pass (tests/test_min_versions.py lists them).
#
# Environment variables:
#   MMVITPE_HOME      cache root (default ~/.cache/mmvitpe)
#   MMVITPE_MIN_VENV  the environment (default $MMVITPE_HOME/venv-min)
#
# The first run downloads torch at its lowest version (about 3 GB with its CUDA libraries,
# PyPI's only Linux build); later runs reuse the environment and take seconds to set up.
# Prints the environment's python path as its last line on stdout.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOME_DIR=${MMVITPE_HOME:-$HOME/.cache/mmvitpe}
VENV=${MMVITPE_MIN_VENV:-$HOME_DIR/venv-min}
PY=$VENV/bin/python

say() { printf '[check_min_versions %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# requirements/core.txt's "name>=X[,<Y]" lines become "name==X".
mapfile -t pins < <(sed -n 's/^\([A-Za-z0-9_.-]*\)>=\([^,; ]*\).*/\1==\2/p' "$REPO/requirements/core.txt")
mmcv_min=$(sed -n 's/^mmcv>=\([^,; ]*\).*/\1/p' "$REPO/requirements/mminstall.txt")
if [[ ${#pins[@]} -eq 0 || -z $mmcv_min ]]; then
    say "no lower bounds found in requirements/core.txt or requirements/mminstall.txt"
    exit 1
fi
# mmcv-lite is mmcv's Python part at the same version: the core needs mmcv.cnn, not mmcv._ext.
pins+=("mmcv-lite==$mmcv_min")
stamp_key=$(printf '%s\n' "${pins[@]}" | sha256sum | cut -c1-16)
STAMP=$VENV/.min-$stamp_key

if [[ ! -f $STAMP ]]; then
    if [[ ! -x $PY ]]; then
        say "creating virtual environment $VENV"
        mkdir -p "$(dirname "$VENV")"
        python3 -m venv "$VENV"
    fi
    say "installing the lowest declared versions: ${pins[*]}"
    # ninja and setuptools: torch.utils.cpp_extension builds the CPU kernel with them.
    "$PY" -m pip install --disable-pip-version-check "${pins[@]}" ninja pytest scipy >&2
    rm -f "$VENV"/.min-*
    touch "$STAMP"
fi
"$PY" - "${pins[@]}" >&2 <<'PYEOF'
import sys
from importlib.metadata import version
for pin in sys.argv[1:]:
    name, wanted = pin.split('==')
    got = version(name)
    if got.split('+')[0] != wanted:
        sys.exit(f'{name} {got} is installed, {wanted} is the declared minimum')
print('minimum versions installed:', ' '.join(sys.argv[1:]))
PYEOF
say "minimum environment ready: $VENV"
echo "$PY"
