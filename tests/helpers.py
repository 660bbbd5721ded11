"""Helpers shared by the test modules (import them from here, not from conftest)."""
import os

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


def perturbed(model):
    """``model`` moved off its neutral init (zero biases, tiny layer scales)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model
