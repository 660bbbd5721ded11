"""Wall-clock timing of one call, shared by the benchmarks in tools/.

Imports torch only: benchmark_adapter.py's worker for the original ViT-Adapter
must not import mmvitpe (it runs mmcv 1.x shims).
"""
import time
from typing import Callable

import torch


def timed(fn: Callable[[], object], device: str) -> float:
    """Seconds ``fn()`` takes, with queued CUDA work finished before and after."""
    if device == 'cuda':
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == 'cuda':
        torch.cuda.synchronize()
    return time.perf_counter() - start
