"""Shared by the benchmarks in tools/: wall-clock timing of one call, and
their ``--results-dir`` (one CSV per benchmark, machine and torch version).

Imports torch only: benchmark_adapter.py's worker for the original ViT-Adapter
must not import mmvitpe (it runs mmcv 1.x shims).
"""
import argparse
import os
import platform
import re
import resource
import time
from typing import Callable, List

import torch

RESULTS_DIR_HELP = ('also write the table to DIR/<benchmark>_<machine>_torch<version>.csv '
                    '(DIR is made if missing; a file of that name is replaced)')


def timed(fn: Callable[[], object], device: str) -> float:
    """Seconds ``fn()`` takes, with queued CUDA work finished before and after."""
    if device == 'cuda':
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == 'cuda':
        torch.cuda.synchronize()
    return time.perf_counter() - start


def results_dir(value: str) -> str:
    """argparse type of ``--results-dir``: a directory, or a path where one can be
    made (by :func:`write_results`), so that a bad path fails before any measurement."""
    if not value:
        raise argparse.ArgumentTypeError("'' is not a directory path")
    existing = os.path.abspath(value)
    while not os.path.exists(existing):  # the nearest part of the path that exists
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise argparse.ArgumentTypeError(
            f'{value!r} exists and is not a directory' if existing == os.path.abspath(value)
            else f'{value!r}: {existing!r} exists and is not a directory')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f'{value!r}: {existing!r} is not writable')
    return value


def check_run_args(parser: argparse.ArgumentParser, args, levels: str) -> None:
    """The arguments every benchmark shares: --size a positive multiple of 32 (its
    coarsest level, ``levels`` says which), --batch and --repeats at least 1, --warmup
    0 or more; a bad one ends the run with the parser's error, naming it."""
    if args.size < 32 or args.size % 32:
        parser.error(f'--size must be a positive multiple of 32 ({levels}), got {args.size}')
    for name in ('batch', 'repeats'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be at least 1, got {getattr(args, name)}')
    if args.warmup < 0:
        parser.error(f'--warmup must be 0 or more, got {args.warmup}')


def current_rss_kb() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') // 1024


def step_memory_mib(run_step: Callable[[], object], device: str) -> float:
    """Peak memory of ``run_step()`` in MiB: CUDA's max allocated, or on CPU the peak
    RSS growth over the process before it (run it in a fresh process: the peak RSS
    is the process's so far)."""
    idle = current_rss_kb()
    run_step()
    if device == 'cuda':
        return torch.cuda.max_memory_allocated() / 2**20
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - idle) / 1024


def _cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == 'model name':
                    return value.strip()
    except OSError:
        pass
    # no /proc, or no 'model name' in it (e.g. ARM): what the platform says
    return platform.processor() or platform.machine()


def machine_name(device: str) -> str:
    """The CUDA device's name, or else the CPU's model name, as a file-name slug
    (lowercase, ``[a-z0-9-]``)."""
    name = torch.cuda.get_device_name() if device == 'cuda' else _cpu_model()
    return re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')


def results_path(directory: str, benchmark: str, device: str) -> str:
    """``directory/<benchmark>_<machine>_torch<version>.csv`` for this machine and
    torch (its public version: 2.14.1 for 2.14.1+cpu)."""
    version = torch.__version__.split('+')[0]
    return os.path.join(directory, f'{benchmark}_{machine_name(device)}_torch{version}.csv')


def write_results(rows: List[dict], directory: str, benchmark: str, device: str) -> str:
    """Write ``rows`` (the benchmark's own CSV columns) to :func:`results_path`
    atomically, say where on stdout, and return the path."""
    from mmvitpe.utils.tables import write_csv
    os.makedirs(directory, exist_ok=True)
    path = results_path(directory, benchmark, device)
    replaced = os.path.exists(path)
    write_csv(rows, path)
    print(f'results: {path}{" (replaced the earlier file)" if replaced else ""}')
    return path
