#!/usr/bin/env bash
# Create or reuse the project's virtual environment; install what is missing.
#
# Idempotent: with everything present it only checks a stamp and returns in
# seconds. mmcv 2.1.0 has no wheel for torch 2.14, so it is built from source
# once per machine into a wheel cache outside the repository, keyed by
# mmcv / torch / CPU-or-CUDA, and reused by every later clone (CI included).
#
# Environment variables:
#   MMVITPE_HOME   cache root (default ~/.cache/mmvitpe): holds venv/ and wheels/
#   MMVITPE_VENV   virtual environment (default $MMVITPE_HOME/venv)
#   MMVITPE_CUDA   1: build mmcv's CUDA ops (needs nvcc); 0: CPU ops only;
#                  unset: CUDA when nvcc exists and torch sees a GPU.
#   MAX_JOBS       parallel compile jobs for mmcv (default: number of cores)
#
# Prints the venv's python path as its last line on stdout; everything else
# goes to stderr, so callers can do PY=$(bash scripts/setup_env.sh).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOME_DIR=${MMVITPE_HOME:-$HOME/.cache/mmvitpe}
VENV=${MMVITPE_VENV:-$HOME_DIR/venv}
CONSTRAINTS=$REPO/requirements/constraints.txt
MMCV_VERSION=2.1.0
PY=$VENV/bin/python

say() { printf '[setup_env %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
elapsed() { local s=$((SECONDS - $1)); printf '%d min %02d s' $((s / 60)) $((s % 60)); }
pip_c() { "$PY" -m pip install --disable-pip-version-check -c "$CONSTRAINTS" "$@" >&2; }

# The stamp changes whenever a requirement file changes, so editing a pin
# re-runs the install steps (each of which is itself a no-op when satisfied).
stamp_key=$(cat "$REPO"/requirements/*.txt "$REPO/setup.py" | sha256sum | cut -c1-16)
STAMP=$VENV/.mmvitpe-$stamp_key

editable_points_here() {
    # The venv is shared between clones: the editable install must point at this
    # one. -I keeps the current directory off sys.path, so a checkout in the
    # working directory cannot pass for the installed one.
    "$PY" -I - "$REPO" <<'EOF' 2>/dev/null
import os, sys, mmvitpe
sys.exit(0 if os.path.dirname(os.path.dirname(os.path.abspath(mmvitpe.__file__))) == sys.argv[1] else 1)
EOF
}

if [[ -f $STAMP ]] && editable_points_here; then
    say "environment ready: $VENV"
    echo "$PY"
    exit 0
fi

if [[ ! -x $PY ]]; then
    say "creating virtual environment $VENV"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
fi

if [[ ! -f $STAMP ]]; then
    say "installing pinned torch, timm, mmengine and build tools (about a minute when cached by pip)"
    pip_c -r "$REPO/requirements/runtime.txt"

    read -r TORCH_VERSION CUDA_VERSION GPU_SEEN < <("$PY" -c \
        "import torch; print(torch.__version__.split('+')[0], torch.version.cuda or 'none', int(torch.cuda.is_available()))")
    want_cuda=${MMVITPE_CUDA:-}
    if [[ -z $want_cuda ]]; then
        want_cuda=0
        if command -v nvcc >/dev/null && [[ $GPU_SEEN == 1 ]]; then want_cuda=1; fi
    fi
    if [[ $want_cuda == 1 ]]; then variant=cu${CUDA_VERSION//./}; else variant=cpu; fi
    WHEELS=$HOME_DIR/wheels/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$variant

    if ! "$PY" -c "import mmcv, mmcv._ext, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
        if ! compgen -G "$WHEELS/mmcv-$MMCV_VERSION-*.whl" >/dev/null; then
            src=$(mktemp -d)
            say "building mmcv $MMCV_VERSION ($variant ops) against torch $TORCH_VERSION into $WHEELS"
            say "this happens once per machine: about 17 minutes on 2 idle CPU cores (77 files), longer on a busy machine; log: $src/build.log"
            "$PY" -m pip download --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$src" >&2
            tar xzf "$src/mmcv-$MMCV_VERSION.tar.gz" -C "$src"
            # torch 2.14's headers need C++20; mmcv 2.1.0's setup.py forces C++17.
            sed -i "s/'-std=c++17'/'-std=c++20'/g" "$src/mmcv-$MMCV_VERSION/setup.py"
            mkdir -p "$WHEELS.partial"
            start=$SECONDS
            # --no-build-isolation: setup.py must see the installed torch, or it
            # silently builds an mmcv without mmcv._ext.
            FORCE_CUDA=$want_cuda MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
                "$PY" -m pip wheel -v --no-build-isolation --no-deps "$src/mmcv-$MMCV_VERSION" \
                -w "$WHEELS.partial" 2>&1 | tee "$src/build.log" | while IFS= read -r line; do
                    # ninja prints "[k/n] <compiler command>": show the file and the time so far.
                    if [[ $line =~ ^[[:space:]]*\[([0-9]+)/([0-9]+)\].*/([A-Za-z0-9_]+\.(cpp|cu))\  ]]; then
                        e=$((SECONDS - start))
                        printf '[setup_env] mmcv build %s/%s %s (%dm%02ds elapsed)\n' \
                            "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}" $((e / 60)) $((e % 60)) >&2
                    fi
                done
            if ! compgen -G "$WHEELS.partial/mmcv-$MMCV_VERSION-*.whl" >/dev/null; then
                say "mmcv build failed; last lines of $src/build.log:"
                tail -n 30 "$src/build.log" >&2
                exit 1
            fi
            rm -rf "$WHEELS" && mv "$WHEELS.partial" "$WHEELS"
            rm -rf "$src"
            say "mmcv wheel cached in $WHEELS (built in $(elapsed $start))"
        else
            say "reusing cached mmcv wheel from $WHEELS"
        fi
        "$PY" -m pip uninstall -y mmcv >&2 2>/dev/null || true  # an mmcv without _ext
        pip_c "$WHEELS"/mmcv-$MMCV_VERSION-*.whl
    fi
    say "installing mmdet and mmsegmentation"
    pip_c -r "$REPO/requirements/openmmlab.txt"
    say "installing onnx, onnxscript and onnxruntime (ONNX export and its tests)"
    pip_c -r "$REPO/requirements/export.txt"
    say "installing transformers in $VENV/transformers, off the path (tests of the Hugging Face layouts)"
    pip_c --upgrade --target "$VENV/transformers" -r "$REPO/requirements/tests.txt"
fi

say "installing mmvitpe (editable) from $REPO"
pip_c --no-deps --no-build-isolation -e "$REPO"
"$PY" -c "import mmcv._ext, mmdet, mmseg, timm, mmvitpe" >&2
rm -f "$VENV"/.mmvitpe-*
touch "$STAMP"
say "environment ready: $VENV (set up in $(elapsed 0))"
echo "$PY"
