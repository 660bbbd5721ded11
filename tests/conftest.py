import os
import subprocess
import sys

import pytest
import torch

from helpers import REPO

# Several pytest-xdist workers share the cores (scripts/run_tests.sh starts one per core):
# a second intra-op thread in each would only contend with the other worker, as
# one_intra_op_thread below found within one process. The tools the tests start inherit it.
if int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1')) > 1:
    torch.set_num_threads(1)
    os.environ.setdefault('OMP_NUM_THREADS', '1')

# A test that takes ``device`` runs once per device; each case carries the
# device's marker, so ``pytest -m cuda`` selects the CUDA cases alone (as
# tools/gpu_check.py does) and machines without CUDA skip them.
DEVICES = [
    pytest.param('cpu', marks=pytest.mark.cpu, id='cpu'),
    pytest.param('cuda', id='cuda', marks=[
        pytest.mark.cuda,
        pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')]),
]


def pytest_configure(config):
    for name in ('cpu', 'cuda'):
        config.addinivalue_line('markers', f'{name}: the {name} case of a device-parametrised test')


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope='module')
def one_intra_op_thread():
    """For modules of tiny models: a second intra-op thread only adds synchronisation,
    which on a busy 2-core machine made timm's prune tests 50x slower (6.4 s vs 0.13 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def demo_data(tmp_path_factory):
    """The built-in demo data in COCO and ADE20K layout (16 training and 4 validation
    scenes of 128 px), written once per test run."""
    root = tmp_path_factory.mktemp('demo')
    subprocess.run([sys.executable, 'tools/make_demo_data.py', '--out', str(root),
                    '--train', '16', '--val', '4', '--size', '128'], cwd=REPO, check=True)
    return str(root)
