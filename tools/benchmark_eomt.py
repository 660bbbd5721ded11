"""Benchmark EoMT against ViT-Adapter with UperNet and with Mask2Former, on one ViT.

All three are mmseg segmentors for ADE20K's 150 classes, built from their configs
with the same trunk, DINOv3-S/16 (its RoPE, qkv bias, class token and 4 register
tokens), randomly initialised:

- ``EoMT``: ``configs/eomt/eomt-s-dinov3_512x512_16e_ade20k.py``; trained with every
  block's attention masked (annealing step 0, the most expensive training step);
- ``ViTAdapter+UperNet``: ``configs/vit_adapter/upernet_vit-adapter-s_512x512_160k_ade20k.py``
  with the DINOv3-S trunk;
- ``ViTAdapter+Mask2Former``: mmseg's Mask2Former head of
  ``configs/foundation/mask2former_vit-adapter-s-dinov3-frozen_512x512_160k_ade20k.py``
  on the backbone of ``ViTAdapter+UperNet`` (not that config's frozen bf16 trunk), so
  that the heads are all that differ from the UperNet row.

Inference: one --size image through the segmentor's whole-image prediction, as
mmseg's test loop runs it (``test_step`` in eval mode under ``no_grad``). Training
step: a batch of --batch through ``train_step`` (loss, backward, the config's
own optimizer and gradient clipping). The variants are interleaved in every round,
in an order that rotates from round to round, after --warmup rounds; each is
reported as the median of --repeats and as a ratio to ``ViTAdapter+Mask2Former``
measured in the same run. The target: EoMT inference <= 0.5x of it.

Memory: one training step at --size, batch --batch, in a fresh process per variant:
peak RSS growth over the built model on CPU, ``torch.cuda.max_memory_allocated`` on
CUDA (weights included); ``--no-memory`` skips it.

Usage (on CPU keep freed memory in the process, see docs/benchmarks.md):
    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 \\
        python tools/benchmark_eomt.py [--device cpu|cuda] [--size 512] [--batch 2]
        [--repeats 3] [--warmup 1] [--no-memory] [--csv out.csv] [--results-dir DIR]

--tiny shrinks the trunk (width 32, 4 blocks, 2 heads), the adapter, EoMT (10
queries in the last 2 blocks) and the heads, for a check that the tool runs; its
timings say nothing about the real models.
"""
import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile

import torch

from timing import (RESULTS_DIR_HELP, check_run_args, results_dir,  # tools/timing.py
                    step_memory_mib, timed, write_results)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPERNET = 'configs/vit_adapter/upernet_vit-adapter-s_512x512_160k_ade20k.py'
CONFIGS = {
    'EoMT': 'configs/eomt/eomt-s-dinov3_512x512_16e_ade20k.py',
    'ViTAdapter+UperNet': UPERNET,
    'ViTAdapter+Mask2Former':
        'configs/foundation/mask2former_vit-adapter-s-dinov3-frozen_512x512_160k_ade20k.py',
}
BASELINE = 'ViTAdapter+Mask2Former'
TARGET = 0.5  # EoMT inference, x the baseline's
NUM_CLASSES = 150  # ADE20K
TRUNK = dict(arch='dinov3_small', pos_embed=dict(type='RoPEDINOv3'), qkv_bias=True,
             class_token=True, num_register_tokens=4, init_cfg=None)
TINY_TRUNK = dict(embed_dim=32, depth=4, num_heads=2)
TINY_ADAPTER = dict(deform_num_heads=2, conv_inplane=8,
                    interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]])
TINY_EOMT_BLOCKS, TINY_QUERIES, TINY_DECODER_LAYERS = 2, 10, 3
TINY_POINTS = 1024  # per mask, in the matching costs and the mask losses


def load_config(variant: str, size: int, tiny: bool):
    """The variant's config with the shared trunk, randomly initialised."""
    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(REPO, CONFIGS[variant]))
    if variant == 'ViTAdapter+Mask2Former':
        cfg.model.backbone = Config.fromfile(os.path.join(REPO, UPERNET)).model.backbone
    backbone = cfg.model.backbone
    backbone.update(TRUNK)
    # mmseg's whole-image prediction: one forward per image, no sliding windows
    cfg.model.test_cfg = dict(mode='whole')
    cfg.model.data_preprocessor.size = (size, size)
    if tiny:
        backbone.update(TINY_TRUNK)
        width = TINY_TRUNK['embed_dim']
        head = cfg.model.decode_head
        if variant == 'EoMT':
            backbone.update(num_blocks=TINY_EOMT_BLOCKS, num_queries=TINY_QUERIES)
            annealing = backbone.mask_annealing  # one start and end per block of num_blocks
            for key in ('start_iters', 'end_iters'):
                annealing[key] = annealing[key][:TINY_EOMT_BLOCKS]
            head.loss.num_points = TINY_POINTS
        elif variant == 'ViTAdapter+UperNet':
            backbone.update(TINY_ADAPTER)
            head.update(in_channels=[width] * 4, channels=16)
            cfg.model.auxiliary_head.update(in_channels=width, channels=8)
        else:
            backbone.update(TINY_ADAPTER)
            head.update(in_channels=[width] * 4, num_queries=TINY_QUERIES)
            head.transformer_decoder.num_layers = TINY_DECODER_LAYERS
            head.pixel_decoder.encoder.num_layers = 1
            head.train_cfg.num_points = TINY_POINTS
    return cfg


def build(variant: str, args):
    """The variant's segmentor on ``args.device`` and its optimizer wrapper."""
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    cfg = load_config(variant, args.size, args.tiny)
    init_default_scope(cfg.default_scope)
    from mmseg.registry import MODELS
    # SyncBN needs a process group; one process computes the same as BN
    model = revert_sync_batchnorm(MODELS.build(cfg.model)).to(args.device)
    if variant == 'EoMT':
        # what the config's EoMTMaskAnnealingHook sets at iteration 0: every mask applied
        model.backbone.set_step(0)
    return model, build_optim_wrapper(model, cfg.optim_wrapper)


def seg_batch(size: int, batch: int) -> dict:
    """An mmseg batch as its data preprocessor takes it: uint8 images, each with a
    label map of 4x4 blocks of random classes: a few classes per image, as a scene
    has (per-pixel noise would make all 150 classes targets of the mask heads)."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(batch):
        sample = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                             pad_shape=(size, size)))
        blocks = torch.randint(0, NUM_CLASSES, (1, 4, 4))
        labels = blocks.repeat_interleave(size // 4, 1).repeat_interleave(size // 4, 2)
        sample.gt_sem_seg = PixelData(data=labels)
        samples.append(sample)
    return dict(inputs=[torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
                        for _ in range(batch)], data_samples=samples)


class Variant:
    """A segmentor with its optimizer and inputs: times its inference and training step."""

    def __init__(self, name: str, args) -> None:
        self.name, self.device = name, args.device
        self.model, self.optim_wrapper = build(name, args)
        self.params_m = sum(p.numel() for p in self.model.parameters()) / 1e6
        self.infer_batch = seg_batch(args.size, 1)
        self.train_batch = seg_batch(args.size, args.batch)

    def infer(self) -> float:
        self.model.eval()
        with torch.no_grad():
            return timed(lambda: self.model.test_step(self.infer_batch), self.device)

    def train(self) -> float:
        self.model.train()
        return timed(lambda: self.model.train_step(self.train_batch, self.optim_wrapper),
                     self.device)


def memory_worker(args) -> None:
    """One training step of ``args.memory_worker``; its peak memory (MiB) to
    ``args.memory_file``."""
    torch.manual_seed(0)
    variant = Variant(args.memory_worker, args)
    mib = step_memory_mib(variant.train, args.device)
    with open(args.memory_file, 'w') as f:
        f.write(repr(mib))


def measure_memory(variant: str, args) -> float:
    """``memory_worker`` in a fresh process: nothing the other variants allocated counts."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'memory')
        cmd = [sys.executable, os.path.abspath(__file__), '--device', args.device, '--size',
               str(args.size), '--batch', str(args.batch), '--memory-worker', variant,
               '--memory-file', path] + (['--tiny'] if args.tiny else [])
        # the worker's stdout (logs, anything its imports print) goes to our stderr
        status = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=sys.stderr).returncode
        if status:
            raise SystemExit(f'benchmark_eomt: the {variant} memory worker exited with status '
                             f'{status}; its error is above')
        with open(path) as f:
            return float(f.read())


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', choices=['cpu', 'cuda'],
                        default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--batch', type=int, default=2, help='of the training step')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--tiny', action='store_true',
                        help='tiny models: checks that the tool runs')
    parser.add_argument('--no-memory', action='store_true')
    parser.add_argument('--csv', help='also write the table here')
    parser.add_argument('--results-dir', type=results_dir, metavar='DIR', help=RESULTS_DIR_HELP)
    parser.add_argument('--memory-worker', choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument('--memory-file', help=argparse.SUPPRESS)
    args = parser.parse_args()
    check_run_args(parser, args, 'pyramid levels down to 1/32')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: torch sees no CUDA device here; valid: cpu')
    return args


def main() -> None:
    args = parse_args()
    import mmvitpe  # noqa: F401  registers the backbones, heads, hooks and constructors
    from mmengine.logging import MMLogger
    # mmengine logs to stdout, the optimizer constructors one line per parameter
    MMLogger.get_current_instance().setLevel(logging.WARNING)
    if args.memory_worker:
        return memory_worker(args)

    from mmengine.utils import ProgressBar

    from mmvitpe.utils.tables import write_csv
    torch.manual_seed(0)
    variants = {name: Variant(name, args) for name in CONFIGS}
    names = list(variants)
    modes = ('infer', 'train')
    times = {(v, m): [] for v in names for m in modes}
    progress = ProgressBar(args.warmup + args.repeats)
    for round_ in range(args.warmup + args.repeats):
        # each variant in turn runs first: none always follows the same neighbour
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        for mode in modes:
            for name in order:
                t = getattr(variants[name], mode)()
                if round_ >= args.warmup:
                    times[name, mode].append(t)
        progress.update()
    memory = {} if args.no_memory else {name: measure_memory(name, args) for name in names}

    med = {key: statistics.median(t) for key, t in times.items()}
    nan = float('nan')
    rows = [dict(variant=name, params_m=variants[name].params_m,
                 infer_ms=1e3 * med[name, 'infer'],
                 infer_ratio=med[name, 'infer'] / med[BASELINE, 'infer'],
                 train_ms=1e3 * med[name, 'train'],
                 train_ratio=med[name, 'train'] / med[BASELINE, 'train'],
                 memory_mib=memory.get(name, nan),
                 memory_ratio=memory.get(name, nan) / memory.get(BASELINE, nan))
            for name in names]
    device = torch.cuda.get_device_name() if args.device == 'cuda' else 'CPU'
    trunk = 'tiny trunk' if args.tiny else 'DINOv3-S/16'
    print(f'\nSegmentors on {trunk}, {NUM_CLASSES} classes, {device}; inference: one '
          f'{args.size}x{args.size} image, whole; training step: batch {args.batch}; median '
          f'of {args.repeats} interleaved repeats after {args.warmup} warm-up rounds; memory: '
          f'one training step')
    print(f'| variant | params M | inference ms | × {BASELINE} | train step ms | '
          f'× {BASELINE} | train memory MiB | × {BASELINE} |')
    print('|---|---:|---:|---:|---:|---:|---:|---:|')
    for r in rows:
        print(f"| {r['variant']} | {r['params_m']:.1f} | {r['infer_ms']:.0f} | "
              f"{r['infer_ratio']:.2f} | {r['train_ms']:.0f} | {r['train_ratio']:.2f} | "
              f"{r['memory_mib']:.0f} | {r['memory_ratio']:.2f} |")
    ratio = rows[names.index('EoMT')]['infer_ratio']
    print(f"EoMT inference: {ratio:.2f}x {BASELINE} (target <= {TARGET}: "
          f"{'met' if ratio <= TARGET else 'not met'})")
    if args.csv:
        write_csv(rows, args.csv)
    if args.results_dir:
        write_results(rows, args.results_dir,
                      f"eomt-{'tiny' if args.tiny else 's'}-{args.size}px-batch{args.batch}",
                      args.device)


if __name__ == '__main__':
    main()
