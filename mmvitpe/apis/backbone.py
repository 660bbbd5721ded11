"""The backbone of a detection or segmentation config, on its own."""
from typing import Optional

from mmengine.config import Config
from torch import nn

from mmvitpe.registry import MODELS


def backbone_from_config(config: str, cfg_options: Optional[dict] = None,
                         pos_embed: Optional[dict] = None) -> nn.Module:
    """Build ``model.backbone`` of ``config`` without its ``init_cfg`` /
    ``pretrained`` (nothing is read from disk), optionally with another PE
    scheme; ``cfg_options`` are merged as ``--cfg-options`` are."""
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return backbone_without_init(cfg, pos_embed)


def backbone_without_init(cfg: Config, pos_embed: Optional[dict] = None) -> nn.Module:
    """``cfg.model.backbone`` built without its ``init_cfg`` / ``pretrained``."""
    backbone = dict(cfg.model.backbone)
    for key in ('init_cfg', 'pretrained'):
        backbone.pop(key, None)
    if pos_embed is not None:
        backbone['pos_embed'] = pos_embed
    return MODELS.build(backbone)
