"""Benchmark ViT-Adapter-T: speed per PE scheme, against the original code, and
against the other adapter protocols.

Each variant (``ours:<scheme>``, and ``original`` when a checkout or mirror of
czczup/ViT-Adapter is given) lives in its own worker process: the original
needs import shims for its mmcv 1.x / mmdet 2.x imports that cannot share a
process with mmcv 2.x. The driver interleaves the workers (A B C A B C ...)
after a warm-up, so every variant sees the same machine state, and reports
medians and ratios to the first variant measured in the same run. Requests and
results travel over a pipe of their own (a ``multiprocessing`` connection on
an inherited file descriptor), not over the workers' stdout, which any import
or library may write to (the workers' stdout goes to the driver's stderr).

Speed: forward and forward+backward at --size (default 512, batch 2), train mode.
Memory: one training step at --memory-size (default 1024, batch 1) in a fresh
process per variant; peak RSS growth over the idle process on CPU, or
``torch.cuda.max_memory_allocated`` on CUDA.

--breakdown times the parts instead (forward+backward of each over the whole
depth: the spatial prior module, the ViT blocks, the injectors, the extractors,
on inputs shaped as in the full forward; "rest" is the full step minus them),
to show which parts a speed-up can come from.

``original`` and ``ours:LearnedPE`` run on identical weights: the original's
random weights are converted by :func:`mmvitpe.weights.load_pretrained`. Both
use the segmentation layout (UperNet configs: all-global attention,
per-stage ViT features) unless --layout det (window 14, blocks 2/5/8/11 global).

Usage:
    python tools/benchmark_adapter.py [--original /path/to/ViT-Adapter]
        [--schemes LearnedPE MPVG ...] [--repeats 5] [--device cpu|cuda] [--csv out.csv]
        [--results-dir DIR] [--breakdown] [--compile [BACKEND]]

--compile adds ``compiled:<scheme>`` variants: ours under
``torch.compile(fullgraph=True)``, timed after their compile (whose time, the
first training and inference call, is reported apart; no memory row).

--protocols times the adapter protocols instead, each with its own PE, on every
``--archs`` trunk (``<protocol>:<arch>`` variants), as ratios to the first
protocol on the same trunk:

    python tools/benchmark_adapter.py --protocols ViTAdapter DINOv3Adapter ViTDet STA \
        ViTBaseline --archs tiny dinov3_small --memory-size 512

The trunk runs its arch's PE and the protocol's defaults (ViTAdapter and ViTBaseline
with the segmentation layout: global attention; ViTDet with its windows and
``input_size`` the benchmark size; DINOv3Adapter frozen; STA and DINOv3Adapter with
the arch's class and register tokens).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from multiprocessing.connection import Connection, Pipe

import torch
from torch.utils.flop_counter import FlopCounterMode

from timing import (RESULTS_DIR_HELP, results_dir, step_memory_mib, timed,  # tools/timing.py
                    write_results)

HERE = os.path.dirname(os.path.abspath(__file__))
DET_WINDOWS = [14, 14, 0] * 4  # original detection configs: blocks 2, 5, 8, 11 global
EMBED_DIM, PATCH = 192, 16  # ViT-Adapter-T


def original_config(layout: str) -> dict:
    windowed = layout == 'det'
    return dict(pretrain_size=224, img_size=224, patch_size=PATCH, embed_dim=EMBED_DIM, depth=12,
                num_heads=3, mlp_ratio=4, conv_inplane=64, n_points=4, deform_num_heads=6,
                init_values=0., interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]],
                with_cffn=True, cffn_ratio=0.25, deform_ratio=1.0, add_vit_feature=True,
                use_extra_extractor=True, drop_path_rate=0.1,
                window_attn=[bool(w) for w in DET_WINDOWS] if windowed else [False] * 12,
                window_size=[w or None for w in DET_WINDOWS] if windowed else [None] * 12)


def build_original(repo: str, layout: str):
    sys.path.insert(0, os.path.join(HERE, 'golden'))
    import make_vit_adapter_fixtures as golden  # runs the original code, unmodified
    tmp = tempfile.mkdtemp(prefix='vit_adapter_original_')
    golden.install_shims(tmp)
    golden.write_tree(tmp, repo, 'HEAD')
    model, _ = golden.build(layout, original_config(layout))
    return model


def build_ours(scheme: str, layout: str, weights: str):
    import mmvitpe  # noqa: F401
    from mmvitpe.models import ViTAdapter
    from mmvitpe.registry import POS_ENCODINGS
    from mmvitpe.weights import load_pretrained
    # a scheme acting at the final norm (MPVG) needs it, as in its configs
    final_norm = POS_ENCODINGS.module_dict[scheme].acts_at_final_norm
    model = ViTAdapter(preset='tiny', pos_embed=dict(type=scheme), final_norm=final_norm,
                       window_size=DET_WINDOWS if layout == 'det' else 0,
                       vit_feature_mode='last' if layout == 'det' else 'per_stage')
    if weights and scheme == 'LearnedPE':
        load_pretrained(model, torch.load(weights, weights_only=True), strict=True)
    return model


PROTOCOL_PRESETS = {'tiny': 'tiny', 'small': 'small', 'base': 'base', 'large': 'large',
                    'dinov3_small': 'small', 'dinov3_base': 'base', 'dinov2_small': 'small'}


def build_protocol(protocol: str, arch: str, size: int):
    from mmvitpe import models
    preset = PROTOCOL_PRESETS[arch]
    options = dict(
        ViTAdapter=dict(preset=preset, vit_feature_mode='per_stage'),
        DINOv3Adapter=dict(preset=preset),
        ViTDet=dict(preset=preset, input_size=size),
        STA={}, ViTBaseline={})[protocol]
    return getattr(models, protocol)(arch=arch, **options)


def train_pass(model, call) -> None:
    """Backward of the sum of means of ``call()``'s output(s); grads then dropped."""
    out = call()
    sum(o.float().mean() for o in (out if isinstance(out, (list, tuple)) else [out])).backward()
    model.zero_grad(set_to_none=True)


def step(model, img, backward: bool, device: str) -> float:
    if backward:
        return timed(lambda: train_pass(model, lambda: model(img)), device)
    with torch.no_grad():
        return timed(lambda: model(img), device)


PARTS = ('spm', 'vit_blocks', 'injectors', 'extractors')


def part_calls(model, variant: str, img, layout: str) -> dict:
    """One forward callable per part in PARTS, each over the model's whole depth."""
    b, device = img.shape[0], img.device
    h, w = img.shape[-2] // PATCH, img.shape[-1] // PATCH
    levels = [(2 * h, 2 * w), (h, w), (h // 2, w // 2)]
    x = torch.randn(b, h * w, EMBED_DIM, device=device, requires_grad=True)
    c = torch.randn(b, sum(i * j for i, j in levels), EMBED_DIM, device=device,
                    requires_grad=True)
    if variant == 'original':
        import importlib
        inj, ext = importlib.import_module(f'va_{layout}.adapter_modules').deform_inputs(img)

        def blocks():
            y = x
            for block in model.blocks:
                y = block(y, h, w)
            return y

        def extract(it):
            y = c
            for extractor in [it.extractor, *(it.extra_extractors or ())]:
                y = extractor(query=y, reference_points=ext[0], feat=x, spatial_shapes=ext[1],
                              level_start_index=ext[2], H=h, W=w)
            return y
        return dict(spm=lambda: model.spm(img), vit_blocks=blocks,
                    injectors=lambda: [it.injector(query=x, reference_points=inj[0], feat=c,
                                                   spatial_shapes=inj[1],
                                                   level_start_index=inj[2])
                                       for it in model.interactions],
                    extractors=lambda: [extract(it) for it in model.interactions])
    from mmvitpe.models.layers.adapter_modules import DeformInputs
    _, state = model.embed(img)
    inj, ext = DeformInputs([state.grid], levels, device), DeformInputs(levels, [state.grid], device)
    return dict(spm=lambda: model.spm(img),
                vit_blocks=lambda: model.forward_blocks(x, state),
                injectors=lambda: [it.inject(x, c, inj) for it in model.interactions],
                extractors=lambda: [it.extract(c, x, ext, levels) for it in model.interactions])


def worker(args) -> None:
    """Serve the driver's requests ('fwd' / 'train' / 'part:NAME' / 'flops:NAME')
    until it closes the channel, or measure memory once; every answer is a number
    sent over the channel."""
    channel = Connection(args.channel_fd)
    torch.manual_seed(0)
    if args.variant == 'original':
        model = build_original(args.original, args.layout)
        if args.save_weights:
            torch.save(model.state_dict(), args.save_weights)
    elif args.variant.startswith(('ours:', 'compiled:')):
        model = build_ours(args.variant.split(':', 1)[1], args.layout, args.load_weights)
    else:
        model = build_protocol(*args.variant.split(':'), args.size)
    model = model.to(args.device).train()
    compile_s = 0.
    if args.variant.startswith('compiled:'):
        # the first call of each mode compiles its graph: timed apart, as compile time
        model = torch.compile(model, backend=args.compile, fullgraph=True)
        warm = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
        compile_s = step(model, warm, True, args.device) + step(model, warm, False, args.device)
    if args.memory:
        img = torch.randn(1, 3, args.memory_size, args.memory_size, device=args.device)
        channel.send(step_memory_mib(lambda: step(model, img, True, args.device),
                                     args.device))
        return
    img = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    parts = {}  # built on the first part request only
    channel.send(compile_s)  # ready
    while True:
        try:
            request, _, part = channel.recv().partition(':')
        except EOFError:  # the driver is done
            return
        if part and not parts:
            parts.update(part_calls(model, args.variant, img, args.layout))
        if request == 'part':
            channel.send(timed(lambda: train_pass(model, parts[part]), args.device))
        elif request == 'flops':
            with FlopCounterMode(display=False) as counter:
                train_pass(model, parts[part])
            channel.send(counter.get_total_flops())
        else:
            channel.send(step(model, img, request == 'train', args.device))


class Worker:
    """A worker process and the driver's end of its channel."""

    def __init__(self, variant: str, args, extra=()) -> None:
        self.variant = variant
        self.channel, theirs = Pipe()
        cmd = [sys.executable, os.path.abspath(__file__), '--worker', variant, '--channel-fd',
               str(theirs.fileno()), '--layout', args.layout, '--device', args.device,
               '--size', str(args.size), '--batch', str(args.batch), '--memory-size',
               str(args.memory_size), *extra]
        if args.original:
            cmd += ['--original', args.original]
        if args.compile:
            cmd += ['--compile', args.compile]
        # the worker's stdout (logs, anything its imports print) goes to our stderr
        self.process = subprocess.Popen(cmd, pass_fds=[theirs.fileno()],
                                        stdin=subprocess.DEVNULL, stdout=sys.stderr)
        theirs.close()  # the worker holds the only other end: its exit reads as EOF here

    def receive(self) -> float:
        try:
            return self.channel.recv()
        except EOFError:
            raise SystemExit(f'benchmark_adapter: the {self.variant} worker exited (status '
                             f'{self.process.wait()}) without an answer; its error is above')

    def ask(self, request: str) -> float:
        self.channel.send(request)
        return self.receive()

    def close(self) -> None:
        self.channel.close()
        self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--original', help='checkout or bare git mirror of czczup/ViT-Adapter')
    parser.add_argument('--schemes', nargs='+', default=['LearnedPE', 'MPVG', 'RoPEMixed',
                                                         'RelPosBias', 'PEG', 'SPSA'])
    parser.add_argument('--layout', choices=['seg', 'det'], default='seg')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--memory-size', type=int, default=1024)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--no-memory', action='store_true')
    parser.add_argument('--breakdown', action='store_true',
                        help='time the parts (forward+backward) instead; no memory')
    parser.add_argument('--csv')
    parser.add_argument('--results-dir', type=results_dir, metavar='DIR', help=RESULTS_DIR_HELP)
    parser.add_argument('--compile', nargs='?', const='inductor', metavar='BACKEND',
                        help='also time torch.compile(fullgraph=True) of ours (backend '
                        'default inductor); the compile time is reported apart')
    parser.add_argument('--protocols', nargs='+', choices=['ViTAdapter', 'DINOv3Adapter',
                                                          'ViTDet', 'STA', 'ViTBaseline'],
                        help='time these adapter protocols instead of PE schemes')
    parser.add_argument('--archs', nargs='+', default=['tiny'], choices=sorted(PROTOCOL_PRESETS),
                        help='the trunks of --protocols')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    parser.add_argument('--channel-fd', type=int, help=argparse.SUPPRESS)
    parser.add_argument('--memory', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--save-weights', help=argparse.SUPPRESS)
    parser.add_argument('--load-weights', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.protocols and (args.original or args.breakdown or args.compile):
        parser.error('--protocols times the protocols: without --original, --breakdown '
                     'and --compile')
    if args.worker:
        args.variant = args.worker
        return worker(args)

    from mmengine.utils import ProgressBar

    from mmvitpe.utils.tables import write_csv
    if args.protocols:
        variants = [f'{p}:{a}' for a in args.archs for p in args.protocols]
    else:
        variants = ((['original'] if args.original else []) + [f'ours:{s}' for s in args.schemes]
                    + ([f'compiled:{s}' for s in args.schemes] if args.compile else []))
    weights = os.path.join(tempfile.mkdtemp(), 'original.pth')
    workers, compile_times = {}, {}
    for v in variants:  # the original first: it writes the weights ours:LearnedPE loads
        extra = (['--save-weights', weights] if v == 'original' else
                 ['--load-weights', weights] if args.original else [])
        workers[v] = Worker(v, args, extra)
        compile_s = workers[v].receive()  # sent once the worker is ready
        if v.startswith('compiled:'):
            compile_times[v] = compile_s
    modes = [f'part:{p}' for p in PARTS] + ['train'] if args.breakdown else ['fwd', 'train']
    times = {(v, m): [] for v in variants for m in modes}
    progress = ProgressBar(args.warmup + args.repeats)
    for round_ in range(args.warmup + args.repeats):
        for mode in modes:
            for v in variants:
                t = workers[v].ask(mode)
                if round_ >= args.warmup:
                    times[v, mode].append(t)
        progress.update()
    flops = {}
    if args.breakdown:
        for v in variants:
            for p in PARTS:
                flops[v, p] = workers[v].ask(f'flops:{p}')
    for w in workers.values():
        w.close()
    if args.breakdown:
        return report_breakdown(variants, times, flops, args)
    memory = {}
    if not args.no_memory:
        for v in (v for v in variants if not v.startswith('compiled:')):
            extra = ['--memory'] + (['--load-weights', weights] if args.original else [])
            measure = Worker(v, args, extra)
            memory[v] = measure.receive()
            measure.close()

    # ratios to the first variant, or to the first protocol on the same trunk
    base_of = ({v: f'{args.protocols[0]}:{v.split(":")[1]}' for v in variants} if args.protocols
               else {v: variants[0] for v in variants})
    base = args.protocols[0] if args.protocols else variants[0]
    med = {k: statistics.median(t) for k, t in times.items()}
    what = (f'protocols on {", ".join(args.archs)}' if args.protocols
            else f'ViT-Adapter-T ({args.layout} layout)')
    print(f'\n{what}, {device_name(args)}; speed: {args.size}x{args.size} '
          f'batch {args.batch}, median of {args.repeats} interleaved repeats; memory: one '
          f'training step at {args.memory_size}x{args.memory_size} batch 1')
    print(f'| variant | fwd ms | fwd × {base} | fwd+bwd ms | fwd+bwd × {base} | '
          f'train memory MiB | memory × {base} |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    rows = []
    for v in variants:
        base = base_of[v]
        row = dict(variant=v, fwd_ms=1e3 * med[v, 'fwd'],
                   fwd_ratio=med[v, 'fwd'] / med[base, 'fwd'],
                   train_ms=1e3 * med[v, 'train'],
                   train_ratio=med[v, 'train'] / med[base, 'train'],
                   memory_mib=memory.get(v, float('nan')),
                   memory_ratio=memory.get(v, float('nan')) / memory.get(base, float('nan')))
        rows.append(row)
        print(f"| {v} | {row['fwd_ms']:.0f} | {row['fwd_ratio']:.2f} | {row['train_ms']:.0f} | "
              f"{row['train_ratio']:.2f} | {row['memory_mib']:.0f} | {row['memory_ratio']:.2f} |")
    for v, seconds in compile_times.items():
        print(f'{v}: compile time {seconds:.1f} s (first training and inference call, '
              f'{args.compile})')
    if args.csv:
        write_csv(rows, args.csv)
    if args.results_dir:
        write_results(rows, args.results_dir, results_benchmark(args), args.device)


def results_benchmark(args) -> str:
    """The <benchmark> part of the --results-dir file name: what the table measured."""
    if args.protocols:
        return f'protocols-{args.size}px-batch{args.batch}'
    return (f'adapter-{args.layout}-{args.size}px-batch{args.batch}'
            + ('-breakdown' if args.breakdown else ''))


def device_name(args) -> str:
    return torch.cuda.get_device_name() if args.device == 'cuda' else 'CPU'


def matmul_gflops(device: str) -> float:
    """This machine's fp32 rate on a 2048^2 matmul: the yardstick for the parts."""
    a = torch.randn(2048, 2048, device=device)
    return max(2 * 2048 ** 3 / timed(lambda: a @ a, device) / 1e9 for _ in range(10))


def report_breakdown(variants, times, flops, args) -> None:
    from mmvitpe.utils.tables import write_csv
    base = variants[0]
    med = {k: 1e3 * statistics.median(t) for k, t in times.items()}
    for v in variants:
        med[v, 'part:rest'] = med[v, 'train'] - sum(med[v, f'part:{p}'] for p in PARTS)
    print(f'\nViT-Adapter-T ({args.layout} layout), {device_name(args)}; forward+backward '
          f'per part at {args.size}x{args.size} batch {args.batch}, median of {args.repeats} '
          f'interleaved repeats; share = part / full step of {base}; GFLOP: matmuls and '
          f'convolutions that torch.utils.flop_counter counts (not CPU fused attention nor '
          f'grid_sample); 2048^2 fp32 matmul here: {matmul_gflops(args.device):.0f} GFLOP/s')
    print('| part | ' + ' | '.join(f'{v} ms | × {base}' for v in variants) +
          f' | share of {base} | ' + ' | '.join(f'{v} GFLOP | GFLOP/s' for v in variants) + ' |')
    print('|---|' + '---:|---:|' * len(variants) + '---:|' + '---:|---:|' * len(variants))
    rows = []
    for mode, label in [(f'part:{p}', p) for p in (*PARTS, 'rest')] + [('train', 'full step')]:
        row = dict(part=label)
        for v in variants:
            row[f'{v}_ms'] = med[v, mode]
            row[f'{v}_ratio'] = med[v, mode] / med[base, mode]
            if (v, label) in flops:
                row[f'{v}_gflop'] = flops[v, label] / 1e9
                row[f'{v}_gflop_per_s'] = row[f'{v}_gflop'] / med[v, mode] * 1e3
        row['share'] = med[base, mode] / med[base, 'train']
        rows.append(row)
        print(f'| {label} | ' + ' | '.join(f"{row[f'{v}_ms']:.0f} | {row[f'{v}_ratio']:.2f}"
                                          for v in variants) + f" | {row['share']:.2f} | " +
              ' | '.join(f"{row[f'{v}_gflop']:.1f} | {row[f'{v}_gflop_per_s']:.0f}"
                         if f'{v}_gflop' in row else '– | –' for v in variants) + ' |')
    if args.csv:
        write_csv(rows, args.csv)
    if args.results_dir:
        write_results(rows, args.results_dir, results_benchmark(args), args.device)


if __name__ == '__main__':
    main()
