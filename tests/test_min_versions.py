"""The versions setup.py declares: the pinned stack satisfies them, the sources parse with the
oldest declared Python, and the lowest declared versions run the core
(``scripts/check_min_versions.sh`` builds that environment)."""
import ast
import glob
import os
import re
import subprocess
from importlib.metadata import version

import pytest
from packaging.requirements import Requirement

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the lowest versions must pass: the ViT core, every PE scheme, ViT-Adapter and the
# deformable-attention op, its CPU kernel built there. mmcv-lite there is mmcv's Python
# part: the cases that compare with mmcv's compiled ops or build an mmdet detector are left
# out, and so are two that start fresh interpreters to watch the kernel's first build and
# an mmcv without compiled ops (that environment is one) in a process, and the per-scheme
# precision and kernel-choice cases (autocast, fused SDPA, memos): not about versions.
CORE_TESTS = ['tests/test_pos_encodings.py', 'tests/test_vit_adapter.py',
              'tests/test_ms_deform_attn.py', '-k',
              'not equals_mmcv and not inside_real_mask_rcnn and not first_build_is_announced '
              'and not import_and_run_without_mmcv and not autocast_is_finite '
              'and not fused_sdpa_kernel and not inference_memos']


def declared(name: str) -> list:
    """The requirements of requirements/<name>, which setup.py declares."""
    with open(os.path.join(REPO, 'setup.py')) as f:
        assert f"requirements('{name}')" in f.read(), f'setup.py does not declare {name}'
    with open(os.path.join(REPO, 'requirements', name)) as f:
        return [Requirement(line) for line in map(str.strip, f)
                if line and not line.startswith('#')]


def python_requires() -> tuple:
    with open(os.path.join(REPO, 'setup.py')) as f:
        found = re.search(r"python_requires='>=(\d+)\.(\d+)'", f.read())
    assert found, 'setup.py declares no python_requires lower bound'
    return int(found.group(1)), int(found.group(2))


@pytest.mark.parametrize('name', ['core.txt', 'mminstall.txt'])
def test_the_pinned_stack_is_within_the_declared_bounds(name):
    for requirement in declared(name):
        installed = version(requirement.name)
        assert requirement.specifier.contains(installed.split('+')[0]), \
            f'{requirement.name} {installed} is outside the declared {requirement}'


def test_the_sources_parse_with_the_oldest_declared_python():
    oldest = python_requires()
    sources = glob.glob(os.path.join(REPO, 'mmvitpe', '**', '*.py'), recursive=True)
    assert len(sources) > 20
    for path in sources:
        with open(path) as f:
            try:
                ast.parse(f.read(), filename=path, feature_version=oldest)
            except SyntaxError as error:
                pytest.fail(f'{os.path.relpath(path, REPO)} needs a newer Python than '
                            f'{oldest}: {error}')


def min_env_python() -> str:
    home = os.environ.get('MMVITPE_HOME', os.path.expanduser('~/.cache/mmvitpe'))
    venv = os.environ.get('MMVITPE_MIN_VENV', os.path.join(home, 'venv-min'))
    return os.path.join(venv, 'bin', 'python')


def test_the_lowest_declared_versions_run_the_core():
    python = min_env_python()
    if not os.path.exists(python):
        # CI sets MMVITPE_REQUIRE_MIN_ENV after building the environment
        if os.environ.get('MMVITPE_REQUIRE_MIN_ENV') == '1':
            pytest.fail(f'{python} is missing: run scripts/check_min_versions.sh')
        pytest.skip(f'no minimum-versions environment at {python}: '
                    'scripts/check_min_versions.sh builds it')
    pins = {r.name: next(s.version for s in r.specifier if s.operator == '>=')
            for r in declared('core.txt')}
    script = ('import sys; from importlib.metadata import version; '
              'print(" ".join(f"{n}=={version(n).split(\'+\')[0]}" for n in sys.argv[1:]))')
    installed = subprocess.run([python, '-c', script, *pins], capture_output=True, text=True,
                               check=True).stdout.split()
    assert installed == [f'{n}=={v}' for n, v in pins.items()]
    # the repository on the path instead of an install; a kernel build directory of that
    # environment's own (a build is for one torch; torch rebuilds when the sources change)
    extensions = os.path.join(os.path.dirname(os.path.dirname(python)), 'torch_extensions')
    env = dict(os.environ, PYTHONPATH=REPO, TORCH_EXTENSIONS_DIR=extensions)
    result = subprocess.run([python, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-x',
                             *CORE_TESTS], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r'\d+ passed', result.stdout), result.stdout[-2000:]
