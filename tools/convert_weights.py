"""Convert released weights offline into a checkpoint our configs load.

    python tools/convert_weights.py SRC CONFIG OUT [--cfg-options k=v ...] [--no-strict]

SRC: a timm/DeiT, MAE, BEiT, LaPE, SP-ViT, CPVT/Twins, rope-vit or original
ViT-Adapter checkpoint (.pth/.pt/.bin or .safetensors, raw or under
state_dict/model, whole detector/segmentor or backbone only). CONFIG decides
the target backbone, its PE scheme included. OUT holds
``{'state_dict': {'backbone.<key>': tensor}, 'meta': {...}}``; use it as
``model.backbone.init_cfg.checkpoint`` or as ``load_from``. The load report
(loaded / resized / newly initialised / dropped / unexpected / missing) is
printed; in strict mode (default) anything unexplained is an error.
"""
import argparse
import sys

import torch
from mmengine.config import DictAction
from mmengine.utils import track_iter_progress

import mmvitpe  # noqa: F401
from mmvitpe.apis import backbone_from_config
from mmvitpe.weights import (IncompatibleCheckpointError, backbone_part, load_pretrained,
                             read_state_dict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src')
    parser.add_argument('config')
    parser.add_argument('out')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--no-strict', action='store_true',
                        help='write the checkpoint even if the report has unexplained keys')
    args = parser.parse_args()
    backbone = backbone_from_config(args.config, args.cfg_options)

    print(f'reading {args.src}', flush=True)
    state = backbone_part(read_state_dict(args.src), source=args.src)
    try:
        report = load_pretrained(backbone, state, strict=not args.no_strict)
    except IncompatibleCheckpointError as e:
        sys.exit(str(e))
    print(report.table())
    converted = {}
    for key, value in track_iter_progress(list(backbone.state_dict().items())):
        converted['backbone.' + key] = value.detach().clone().contiguous()
    meta = dict(source=args.src, config=args.config, backbone=type(backbone).__name__,
                pos_embed=type(backbone.pe).__name__, report=report.table())
    torch.save({'state_dict': converted, 'meta': meta}, args.out)
    print(f'\nwrote {args.out}')


if __name__ == '__main__':
    main()
