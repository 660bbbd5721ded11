"""Benchmark: cost of each positional-encoding scheme in the ViT core.

Times forward and forward+backward of one ViT (default ViT-Ti, 512x512, batch 1)
per scheme. The variants are interleaved (A B C ... A B C ...) after a warm-up,
and each is reported as the median over repeats and as a ratio to ``NoPE``
measured in the same run, because absolute times on a shared machine drift.

--kernel-cost also times one global attention call (forward, and forward+backward)
at the same shape with no logit term, a learned additive bias (SDPA with a mask
that needs a gradient in training) and a learned multiplicative gain (the
explicit path). The call's extra time, times the depth, over NoPE's time is
the ratio the attention kernel alone implies for such a scheme on this device,
before any cost of building its term: how far below it no implementation on
these kernels can go, up to timing noise.

Usage:
    python tools/benchmark_pe.py [--device cpu|cuda] [--size 512] [--batch 1]
        [--dtype fp32|bf16|fp16] [--repeats 7] [--schemes NoPE LaPE ...] [--csv out.csv]
        [--results-dir DIR] [--kernel-cost]

--dtype bf16/fp16 runs the models under autocast to that type (their weights stay fp32).
"""
import argparse
import statistics

import torch
from mmengine.utils import ProgressBar

import mmvitpe  # noqa: F401
from mmvitpe.models import PEViT
from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.utils.tables import write_csv
from timing import RESULTS_DIR_HELP, results_dir, timed, write_results  # tools/timing.py

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def run_model(model, img, backward: bool, device: str, dtype: torch.dtype) -> None:
    with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
        if backward:
            model(img)[0].float().sum().backward()
        else:
            with torch.no_grad():
                model(img)


def kernel_cost(model: PEViT, args, nope_s: dict) -> None:
    """Print one attention call per logit-term kind and the ratios it implies."""
    n = (args.size // model.patch_size) ** 2
    head_dim = model.embed_dim // model.num_heads
    # the dtype the blocks' q, k, v have under the benchmark's autocast
    q, k, v = (torch.randn(args.batch, model.num_heads, n, head_dim, device=args.device,
                           dtype=DTYPES[args.dtype], requires_grad=True) for _ in range(3))
    term = torch.rand(model.num_heads, n, n, device=args.device, requires_grad=True)
    attend = model.blocks[0].attn._attend  # the model's own kernel choice per term
    kernels = {'none': lambda t: attend(q, k, v, None, None),
               'learned additive bias': lambda t: attend(q, k, v, t, None),
               'learned multiplicative gain': lambda t: attend(q, k, v, None, t)}
    def run(kernel, backward: bool) -> None:
        # inference: a term that requires grad would send SDPA down its math path
        with torch.set_grad_enabled(backward):
            out = kernel(term if backward else term.detach())
        if backward:
            out.sum().backward()

    times = {(name, b): [] for name in kernels for b in (False, True)}
    for round_ in range(args.warmup + args.repeats):
        for backward in (False, True):
            for name, kernel in kernels.items():
                t = timed(lambda: run(kernel, backward), args.device)
                if round_ >= args.warmup:
                    times[name, backward].append(t)
    med = {key: statistics.median(t) for key, t in times.items()}
    print(f'\nOne global attention call, B={args.batch} heads={model.num_heads} N={n} '
          f'd={head_dim} {args.dtype}; implied = (NoPE time + depth x extra time of the '
          f'call) / NoPE time')
    print('| logit term | forward ms | implied × NoPE | fwd+bwd ms | implied × NoPE |')
    print('|---|---:|---:|---:|---:|')
    for name in kernels:
        cells = []
        for b in (False, True):
            extra = model.depth * (med[name, b] - med['none', b])
            cells += [f'{1e3 * med[name, b]:.2f}', f'{(nope_s[b] + extra) / nope_s[b]:.3f}']
        print(f'| {name} | ' + ' | '.join(cells) + ' |')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    schemes = sorted(POS_ENCODINGS.module_dict)
    parser.add_argument('--device', choices=['cpu', 'cuda'],
                        default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--arch', default='tiny')
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--dtype', choices=sorted(DTYPES), default='fp32',
                        help='autocast to this type (fp32: no autocast)')
    parser.add_argument('--schemes', nargs='+', default=schemes, choices=schemes)
    parser.add_argument('--csv', help='also write the table here')
    parser.add_argument('--results-dir', type=results_dir, metavar='DIR', help=RESULTS_DIR_HELP)
    parser.add_argument('--kernel-cost', action='store_true',
                        help='also time the attention kernel per logit-term kind')
    args = parser.parse_args()
    if 'NoPE' not in args.schemes:
        args.schemes.insert(0, 'NoPE')

    torch.manual_seed(0)
    models = {s: PEViT(arch=args.arch, pos_embed=dict(type=s)).to(args.device)
              for s in args.schemes}
    img = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    times = {(s, b): [] for s in args.schemes for b in (False, True)}
    progress = ProgressBar(args.warmup + args.repeats)
    for round_ in range(args.warmup + args.repeats):
        for backward in (False, True):
            for scheme in args.schemes:
                t = timed(lambda: run_model(models[scheme], img, backward, args.device,
                                            DTYPES[args.dtype]), args.device)
                if round_ >= args.warmup:
                    times[scheme, backward].append(t)
        progress.update()

    rows = []
    base = {b: statistics.median(times['NoPE', b]) for b in (False, True)}
    for scheme in args.schemes:
        fwd, bwd = (statistics.median(times[scheme, b]) for b in (False, True))
        rows.append(dict(scheme=scheme, forward_ms=1e3 * fwd, forward_ratio=fwd / base[False],
                         train_ms=1e3 * bwd, train_ratio=bwd / base[True]))
    device = torch.cuda.get_device_name() if args.device == 'cuda' else 'CPU'
    autocast = f', {args.dtype} autocast' if args.dtype != 'fp32' else ''
    print(f'\nViT-{args.arch} {args.size}x{args.size} batch {args.batch}, {device}{autocast}, '
          f'median of {args.repeats} interleaved repeats after {args.warmup} warm-up rounds')
    print('| scheme | forward ms | × NoPE | fwd+bwd ms | × NoPE |')
    print('|---|---:|---:|---:|---:|')
    for r in rows:
        print(f"| {r['scheme']} | {r['forward_ms']:.1f} | {r['forward_ratio']:.3f} | "
              f"{r['train_ms']:.1f} | {r['train_ratio']:.3f} |")
    if args.csv:
        write_csv(rows, args.csv)
    if args.results_dir:
        write_results(rows, args.results_dir, f'pe-{args.arch}-{args.size}px-batch{args.batch}-'
                      f'{args.dtype}', args.device)
    if args.kernel_cost:
        kernel_cost(models['NoPE'], args, base)


if __name__ == '__main__':
    main()
