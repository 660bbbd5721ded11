"""Benchmark the deformable-attention op's CPU paths on ViT-Adapter-T's shapes.

Paths: ``grid_sample`` (mmcv's ``multi_scale_deformable_attn_pytorch``
arithmetic, backward by autograd: what the original ViT-Adapter runs on CPU),
``gather`` (embedding_bag forward, :func:`_gradients` backward: the fallback
without a compiler, and fp16/bf16) and ``compiled`` (this package's C++
kernels, what the op runs on CPU in fp32/fp64). Interleaved per repeat;
medians and ratios to ``grid_sample`` in the same run.

Shapes at --size (default 512, batch 2, 6 heads of 32 channels, 4 points):
the injector (queries at 1/16, values at 1/8, 1/16, 1/32) and the extractor
(queries at all three, values at 1/16).

Usage:
    python tools/benchmark_ms_deform_attn.py [--size 512] [--batch 2] [--repeats 7]
        [--csv out.csv] [--results-dir DIR]
"""
import argparse
import importlib
import statistics
from typing import Callable, Dict, List, Tuple

import torch

from timing import (RESULTS_DIR_HELP, check_run_args, results_dir, timed,  # tools/timing.py
                    write_results)


def cases(size: int) -> Dict[str, Tuple[int, List[Tuple[int, int]]]]:
    levels = [(size // s, size // s) for s in (8, 16, 32)]
    return {'injector': (size // 16 * (size // 16), levels),
            'extractor': (sum(h * w for h, w in levels), [levels[1]])}


def paths(value, shapes, loc, weights, grad) -> Dict[str, Dict[str, Callable[[], object]]]:
    # the module (the package's name ms_deform_attn is the op)
    op = importlib.import_module('mmvitpe.ops.ms_deform_attn')
    kernels = op.cpu_kernels()
    if kernels is None:
        raise SystemExit('the CPU kernel did not build (see the warning above)')
    flat = [s for hw in shapes for s in hw]
    leaves = [t.detach().requires_grad_() for t in (value, loc, weights)]

    def autograd_step():
        out = op.ms_deform_attn_grid_sample(leaves[0], shapes, leaves[1], leaves[2])
        return torch.autograd.grad(out, leaves, grad)

    return {
        'grid_sample': dict(
            fwd=lambda: op.ms_deform_attn_grid_sample(value, shapes, loc, weights),
            fwd_bwd=autograd_step),
        'gather': dict(
            fwd=lambda: op.ms_deform_attn_gather(value, shapes, loc, weights),
            fwd_bwd=lambda: (op.ms_deform_attn_gather(value, shapes, loc, weights),
                             op._gradients(grad, value, shapes, loc, weights,
                                           op._bilinear_samples_gather))),
        'compiled': dict(
            fwd=lambda: kernels.ms_deform_attn(value, flat, loc, weights),
            fwd_bwd=lambda: (kernels.ms_deform_attn(value, flat, loc, weights),
                             kernels.ms_deform_attn_backward(grad, value, flat, loc, weights))),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--csv', help='also write the table here')
    parser.add_argument('--results-dir', type=results_dir, metavar='DIR', help=RESULTS_DIR_HELP)
    args = parser.parse_args()
    check_run_args(parser, args, 'levels at 1/8, 1/16, 1/32')
    from mmvitpe.utils.tables import write_csv
    heads, dim, points = 6, 32, 4
    torch.manual_seed(0)
    rows = []
    for case, (queries, shapes) in cases(args.size).items():
        keys = sum(h * w for h, w in shapes)
        value = torch.randn(args.batch, keys, heads, dim)
        loc = torch.rand(args.batch, queries, heads, len(shapes), points, 2)
        weights = torch.rand(args.batch, queries, heads, len(shapes), points).softmax(-1)
        grad = torch.randn(args.batch, queries, heads * dim)
        variants = paths(value, shapes, loc, weights, grad)
        times = {(name, kind): [] for name in variants for kind in ('fwd', 'fwd_bwd')}
        for repeat in range(args.warmup + args.repeats):
            for name, fns in variants.items():  # interleaved: A B C A B C ...
                for kind, fn in fns.items():
                    elapsed = timed(fn, 'cpu')
                    if repeat >= args.warmup:
                        times[name, kind].append(elapsed)
        ms = {key: statistics.median(ts) * 1e3 for key, ts in times.items()}
        rows += [dict(case=case, path=name, fwd_ms=round(ms[name, 'fwd'], 2),
                      fwd_ratio=round(ms[name, 'fwd'] / ms['grid_sample', 'fwd'], 3),
                      fwd_bwd_ms=round(ms[name, 'fwd_bwd'], 2),
                      fwd_bwd_ratio=round(ms[name, 'fwd_bwd'] / ms['grid_sample', 'fwd_bwd'], 3))
                 for name in variants]
    print(f'{torch.get_num_threads()} threads; medians of {args.repeats}')
    print('| case | path | fwd ms | fwd × grid_sample | fwd+bwd ms | fwd+bwd × grid_sample |')
    print('|---|---|---:|---:|---:|---:|')
    for r in rows:
        print(f'| {r["case"]} | {r["path"]} | {r["fwd_ms"]:.1f} | {r["fwd_ratio"]:.2f} | '
              f'{r["fwd_bwd_ms"]:.1f} | {r["fwd_bwd_ratio"]:.2f} |')
    if args.csv:
        write_csv(rows, args.csv)
    if args.results_dir:
        write_results(rows, args.results_dir,
                      f'ms_deform_attn-{args.size}px-batch{args.batch}', 'cpu')


if __name__ == '__main__':
    main()
