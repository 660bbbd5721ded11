import os

import pytest
import torch

class RunsCode:
    """Unpickling this would run a shell command: used to check refusals."""

    def __reduce__(self):
        return (os.system, ('echo pwned',))


FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
