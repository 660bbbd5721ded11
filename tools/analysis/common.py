"""Arguments, model and image loading, and output handling shared by the analysis tools."""
import argparse
import glob
import os
from typing import Optional

import cv2
import matplotlib
import torch
from mmengine.config import Config, DictAction
from torch import Tensor, nn

import mmvitpe  # noqa: F401  (registers the backbones)
from mmvitpe.apis import backbone_from_config
from mmvitpe.utils.io import atomic_write
from mmvitpe.weights import backbone_part, load_pretrained, read_state_dict

matplotlib.use('Agg')


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='a config whose model.backbone is an mmvitpe backbone')
    p.add_argument('--checkpoint', help='weights (whole model or backbone, any layout)')
    p.add_argument('--images', help='directory of images (default: random noise)')
    p.add_argument('--size', type=int, default=224, help='input side in pixels')
    p.add_argument('--out', default='work_dirs/analysis', help='output directory')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p


def output(args, name: str) -> str:
    os.makedirs(args.out, exist_ok=True)
    return os.path.join(args.out, name)


def save_figure(fig, path: str, dpi: int) -> None:
    """``fig.savefig``, atomically (no half-written image after an interrupted run)."""
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=dpi)


def load_backbone(config: str, checkpoint: Optional[str] = None,
                  cfg_options: Optional[dict] = None, pos_embed: Optional[dict] = None
                  ) -> nn.Module:
    """The config's backbone in eval mode (optionally with another PE), weights
    from a checkpoint (whole model or backbone; any layout mmvitpe reads),
    loaded non-strictly: the tools also look at partly matching weights."""
    model = backbone_from_config(config, cfg_options, pos_embed)
    if checkpoint:
        load_pretrained(model, backbone_part(read_state_dict(checkpoint)), strict=False)
    return model.eval()


def load_images(args, size: int, count: int = 4) -> Tensor:
    """Up to ``count`` images of ``args.images``, resized and normalised as the
    config's data preprocessor does (B, 3, size, size); seeded noise without
    a directory."""
    if not args.images:
        return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(0))
    paths = sorted(p for p in glob.glob(os.path.join(args.images, '*'))
                   if p.lower().endswith(('.jpg', '.jpeg', '.png')))[:count]
    if not paths:
        raise FileNotFoundError(f'no .jpg/.png images in {args.images}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    pre = cfg.model.data_preprocessor
    mean, std = torch.tensor(pre.mean), torch.tensor(pre.std)
    imgs = []
    for path in paths:
        img = cv2.resize(cv2.imread(path), (size, size))
        if pre.get('bgr_to_rgb', False):
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        imgs.append((torch.from_numpy(img).float() - mean) / std)
    return torch.stack(imgs).permute(0, 3, 1, 2).contiguous()
