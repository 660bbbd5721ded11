"""Convert released weights offline into a checkpoint our configs load.

    python tools/convert_weights.py SRC CONFIG OUT [--cfg-options k=v ...] [--no-strict]

SRC: a checkpoint file (.pth/.pt/.bin or .safetensors, raw or under
state_dict/model/module, whole mmdet/mmseg model or backbone only) or a Hugging Face
model directory (config.json + safetensors, shards included; config.json must agree
with CONFIG's backbone), of mmvitpe's own layout, timm's, or one of the checkpoint
families below; docs/weights.md lists what is read of each. CONFIG decides
the target backbone, its PE scheme included. OUT holds
``{'state_dict': {'backbone.<key>': tensor}, 'meta': {...}}``; use it as
``model.backbone.init_cfg.checkpoint`` or as ``load_from``. The load report
(loaded / resized / newly initialised / dropped / unexpected / missing) is
printed; in strict mode (default) anything unexplained is an error. OUT is
written atomically (nothing is left cut off by an interrupted run) and may not
be SRC or CONFIG.
"""
import argparse
import sys

import torch
from mmengine.config import Config
from mmengine.utils import track_iter_progress

import mmvitpe  # noqa: F401
from mmvitpe.apis import backbone_without_init, check_cfg_options, exit_on_bad_input
from mmvitpe.apis.launch import CfgOptionsAction
from mmvitpe.utils.io import atomic_write, check_not_an_input
from mmvitpe.weights import (IncompatibleCheckpointError, backbone_part, load_pretrained,
                             read_source_config, read_state_dict)
from mmvitpe.weights.families import FAMILIES


def main() -> None:
    families = '\n'.join(f'  {f.name}: {f.sources}' for f in FAMILIES.values())
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=f'checkpoint families it translates:\n{families}')
    parser.add_argument('src')
    parser.add_argument('config')
    parser.add_argument('out')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        help='override config keys, e.g. model.backbone.depth=4')
    parser.add_argument('--no-strict', action='store_true',
                        help='write the checkpoint even if the report has unexplained keys')
    args = parser.parse_args()
    try:
        check_not_an_input('OUT', args.out, dict(SRC=args.src, CONFIG=args.config))
    except ValueError as e:
        parser.error(str(e))
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        with exit_on_bad_input():
            check_cfg_options(cfg, args.cfg_options)
        cfg.merge_from_dict(args.cfg_options)
    backbone = backbone_without_init(cfg)

    print(f'reading {args.src}', flush=True)
    state = backbone_part(read_state_dict(args.src), source=args.src)
    try:
        report = load_pretrained(backbone, state, strict=not args.no_strict,
                                 source_config=read_source_config(args.src))
    except IncompatibleCheckpointError as e:
        sys.exit(str(e))
    print(report.table())
    converted = {}
    for key, value in track_iter_progress(list(backbone.state_dict().items())):
        converted['backbone.' + key] = value.detach().clone().contiguous()
    meta = dict(source=args.src, config=args.config, backbone=type(backbone).__name__,
                pos_embed=type(backbone.pe).__name__, report=report.table())
    with atomic_write(args.out) as tmp:
        torch.save({'state_dict': converted, 'meta': meta}, tmp)
    print(f'\nwrote {args.out}')


if __name__ == '__main__':
    main()
