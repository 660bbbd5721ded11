"""Export a config's backbone (optionally with its neck) to ONNX and check it.

    python tools/deployment/export_onnx.py CONFIG [CHECKPOINT] --shape H W
        [--dynamic] [--with-neck] [--out FILE] [--cfg-options k=v ...]

The graph comes from ``torch.onnx.export(dynamo=True)`` under ``torch.no_grad()``:
the deformable attention is recorded as its pure-PyTorch arithmetic (a
``grid_sample`` per level), RoPE as real sin/cos products, and no inference memo
enters the graph. ``--dynamic`` makes batch, height and width dynamic. The file
is checked with ``onnx.checker`` and run with onnxruntime against PyTorch at
the export size and, with ``--dynamic``, at a second size and batch; the
command fails when an output differs by more than ``--atol`` (1e-4).

CHECKPOINT is a training checkpoint of the whole model (``backbone.*`` and
``neck.*`` are taken from it); without it the weights are random, which is
enough to check the graph. The backbone's ``init_cfg`` is never run.

``--out`` is written atomically, after ``onnx.checker`` passed on it (an
interrupted or failed export leaves the previous file as it was), and may not
be CONFIG or CHECKPOINT.
"""
import argparse
import os
import sys

import numpy as np
import torch
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import init_default_scope
from torch import nn

import mmvitpe  # noqa: F401  (registers modules, applies the checkpoint policy)
from mmvitpe.apis import (add_common_args, backbone_without_init, exit_on_bad_input,
                          prepare_config)
from mmvitpe.utils.io import atomic_write, check_not_an_input
from mmvitpe.weights.reader import read_state_dict


class Exported(nn.Module):
    """Backbone, then neck: a tuple of feature maps."""

    def __init__(self, backbone: nn.Module, neck: nn.Module = None) -> None:
        super().__init__()
        self.backbone, self.neck = backbone, neck

    def forward(self, img):
        feats = self.backbone(img)
        return tuple(self.neck(feats)) if self.neck is not None else tuple(feats)


def build(args) -> Exported:
    with exit_on_bad_input():
        cfg = prepare_config(args.config, args.cfg_options, 'none', None)
    neck = None
    if args.with_neck:
        if cfg.model.get('neck') is None:
            raise SystemExit(f'--with-neck: {args.config} has no model.neck')
        init_default_scope(cfg.get('default_scope', 'mmdet'))
        neck = ROOT_MODELS.build(cfg.model.neck)
    model = Exported(backbone_without_init(cfg), neck)
    if args.checkpoint:
        with exit_on_bad_input():
            state = read_state_dict(args.checkpoint)
        parts = ['backbone'] + (['neck'] if neck is not None else [])
        model.load_state_dict({k: v for k, v in state.items() if k.split('.')[0] in parts})
    return model.eval()


def run_onnx(session, img: torch.Tensor) -> list:
    return session.run(None, {session.get_inputs()[0].name: img.numpy()})


def compare(name: str, session, model: nn.Module, img: torch.Tensor, atol: float) -> bool:
    with torch.no_grad():
        expected = model(img)
    got = run_onnx(session, img)
    diff = max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected))
    shapes = [tuple(g.shape) for g in got]
    ok = len(got) == len(expected) and all(
        g.shape == tuple(e.shape) for g, e in zip(got, expected)) and diff <= atol
    print(f'{name}: input {tuple(img.shape)} -> outputs {shapes}, max abs diff '
          f'{diff:.2e} vs PyTorch ({"ok" if ok else f"FAILS atol {atol}"})')
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=2,
                        help='export batch (2: torch.export specialises a batch of 1)')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic batch, height and width')
    parser.add_argument('--with-neck', action='store_true', help='export backbone + neck')
    parser.add_argument('--out', default='backbone.onnx')
    parser.add_argument('--atol', type=float, default=1e-4)
    add_common_args(parser)
    args = parser.parse_args()
    if min(args.shape) < 1 or args.batch < 1:
        raise SystemExit(f'--shape {args.shape} --batch {args.batch}: need positive sizes')
    if not args.atol >= 0:
        raise SystemExit(f'--atol {args.atol}: need a tolerance >= 0')
    if args.checkpoint and not os.path.isfile(args.checkpoint):
        raise SystemExit(f'error: checkpoint not found: {args.checkpoint}')
    try:
        check_not_an_input('--out', args.out,
                           dict(CONFIG=args.config, CHECKPOINT=args.checkpoint))
    except ValueError as e:
        parser.error(str(e))
    import onnx
    import onnxruntime

    model = build(args)
    torch.manual_seed(0)
    img = torch.randn(args.batch, 3, *args.shape)
    dynamic_shapes = None
    if args.dynamic:
        auto = torch.export.Dim.AUTO
        dynamic_shapes = ({0: auto, 2: auto, 3: auto},)
    with torch.no_grad():
        program = torch.onnx.export(model, (img,), dynamo=True, dynamic_shapes=dynamic_shapes,
                                    input_names=['img'])
    with atomic_write(args.out) as tmp:
        program.save(tmp)
        onnx.checker.check_model(tmp, full_check=True)
    print(f'wrote {args.out}; onnx.checker: ok')
    session = onnxruntime.InferenceSession(args.out, providers=['CPUExecutionProvider'])
    ok = compare('export size', session, model, img, args.atol)
    if args.dynamic:
        other = torch.randn(args.batch + 1, 3, args.shape[0] + 32, args.shape[1] + 64)
        ok = compare('another size', session, model, other, args.atol) and ok
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
