import pytest
import torch

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
