import os

import pytest
import torch

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
