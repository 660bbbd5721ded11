"""Helpers shared by the test modules (import them from here, not from conftest)."""
import os

import pytest
import torch


class RunsCode:
    """Unpickling this would run a shell command: used to check refusals."""

    def __reduce__(self):
        return (os.system, ('echo pwned',))


FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')


def rotate_head_major(pe, q, k, block, state):
    """``pe.rotate`` for q, k given (and returned) as (B, heads, N, head_dim)."""
    qk = pe.rotate(torch.stack([q, k], 2).transpose(1, 3), block, state)
    return qk.transpose(1, 3).unbind(2)


@pytest.fixture(scope='module')
def one_intra_op_thread():
    """For modules of tiny models: a second intra-op thread only adds synchronisation,
    which on a busy 2-core machine made timm's prune tests 50x slower (6.4 s vs 0.13 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def perturbed(model):
    """``model`` moved off its neutral init (zero biases, tiny layer scales)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model
