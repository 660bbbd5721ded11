"""Layer-wise learning-rate decay for ViT backbones, in mmdet and mmseg configs.

mmseg 1.x's constructor only accepts BEiT/MAE/ConvNeXt class names and mmdet's
pip wheel only ConvNeXt, so this one asks the backbone instead: any backbone
with ``get_layer_depth(name) -> (layer_id, num_layers)`` (our ViT core and the
backbones built on it) gets

    lr = base_lr * decay_rate ** (num_layers - 1 - layer_id)

with patch embedding / class token / shared PE tables at layer 0, block i at
layer i + 1, and the adapter, the neck and the heads at the top layer (full
lr), as in the original ViT-Adapter. No weight decay for 1-D parameters,
biases and the backbone's ``no_weight_decay()`` names (PE parameters, class
token, level embeddings), as the original detection configs ask with
``custom_keys``. (The original segmentation constructor means to exempt
``pos_embed`` and ``cls_token`` too, but compares them with prefixed names, so
there they, and ``level_embed``, are decayed.)
"""
from typing import List

from mmengine.logging import MMLogger
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from mmvitpe.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmvitpe.utils.validation import check_int, check_real


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Use as ``optim_wrapper=dict(constructor='mmvitpe.LayerDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.95), ...)``.

    paramwise_cfg keys: ``decay_rate`` (in (0, 1]), or the original ViT-Adapter
    spelling ``layer_decay_rate`` with ``num_layers`` (the backbone's depth,
    checked against it).
    """
    RATE_KEYS = ('decay_rate', 'layer_decay_rate')
    KEYS = RATE_KEYS + ('num_layers', )

    def add_params(self, params: List[dict], module: nn.Module, **kwargs) -> None:
        cfg = self.paramwise_cfg
        rate_keys = [k for k in self.RATE_KEYS if k in cfg]
        if set(cfg) - set(self.KEYS) or len(rate_keys) != 1:
            raise ValueError(f'{type(self).__name__}: paramwise_cfg takes decay_rate, or '
                             f'layer_decay_rate with optional num_layers (the original '
                             f'spelling); got {sorted(cfg)}')
        rate = check_real(type(self).__name__, f'paramwise_cfg.{rate_keys[0]}',
                          cfg[rate_keys[0]], low=0., high=1., low_open=True)
        if is_model_wrapper(module):
            module = module.module
        backbone = getattr(module, 'backbone', module)
        if not hasattr(backbone, 'get_layer_depth'):
            raise TypeError(f'{type(backbone).__name__} has no get_layer_depth(); layer decay '
                            'needs a backbone from mmvitpe (or one that defines it)')
        depth = backbone.get_layer_depth('')[1] - 2
        if check_int(type(self).__name__, 'paramwise_cfg.num_layers',
                     cfg.get('num_layers', depth)) != depth:
            raise ValueError(f"paramwise_cfg num_layers={cfg['num_layers']}, but the backbone "
                             f'has {depth} blocks')
        prefix = 'backbone.' if backbone is not module else ''
        no_decay = {prefix + n for n in backbone.no_weight_decay()}
        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            if name.startswith(prefix):
                layer_id, num_layers = backbone.get_layer_depth(name[len(prefix):])
            else:
                layer_id, num_layers = backbone.get_layer_depth('')  # top layer
            decay = not (param.ndim == 1 or name.endswith('.bias') or name in no_decay)
            scale = rate ** (num_layers - 1 - layer_id)
            key = f'layer_{layer_id}_{"decay" if decay else "no_decay"}'
            group = groups.setdefault(key, dict(
                params=[], param_names=[], group_name=key, lr_scale=scale,
                lr=self.base_lr * scale, weight_decay=self.base_wd if decay else 0.))
            group['params'].append(param)
            group['param_names'].append(name)
        params.extend(groups.values())
        logger = MMLogger.get_current_instance()
        for key, group in sorted(groups.items()):
            logger.debug(f'{key}: lr_scale {group["lr_scale"]:.4f}, weight_decay '
                         f'{group["weight_decay"]}, {len(group["params"])} tensors')
