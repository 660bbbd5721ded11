"""EoMT's optimisation recipe in mmengine: its layer-wise learning rates and its
two-stage warmup + poly schedule.

EoMT's Lightning module gives every backbone parameter its own rate and warms the
heads first, the ViT after them (it stays at rate 0 while the heads warm up). Neither
mmengine's ``DefaultOptimWrapperConstructor`` (no layer decay, and groups that do not
say what they hold) nor its schedulers (one curve for all groups) can express that,
so the constructor below tags each group as 'vit' or 'head' and the scheduler reads
the tag.
"""
from typing import List

from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import _ParamScheduler
from torch import nn

from mmvitpe.registry import OPTIM_WRAPPER_CONSTRUCTORS, PARAM_SCHEDULERS
from mmvitpe.utils.validation import (check_bool, check_int, check_int_list, check_positive,
                                      check_real)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class EoMTOptimizerConstructor(DefaultOptimWrapperConstructor):
    """EoMT's parameter groups, for a model whose backbone is ``mmvitpe.EoMT``.

    ``optim_wrapper=dict(constructor='mmvitpe.EoMTOptimizerConstructor',
    paramwise_cfg=dict(decay_rate=0.8, decay_query_blocks=True), ...)``:

    * ViT block ``i`` of ``L``: ``lr * decay_rate ** (L - 1 - i)``; the patch
      embedding, class and register tokens and shared PE tables as block 0, a PE
      parameter of block ``i`` as block ``i``; the final norm (and a PE term at it)
      at ``lr``. ``decay_rate`` is required (EoMT's ``llrd``: 0.8 by default, 1.0
      in its DINOv3 ADE20K recipe). With ``decay_query_blocks=False`` (EoMT's
      ``llrd_l2_enabled=False``) the last ``num_blocks`` blocks, which the queries
      run through, are at ``lr`` too.
    * The queries and heads at ``lr``.
    * Weight decay on every parameter, as EoMT's AdamW.

    Every group carries ``eomt_part`` ('vit' or 'head') for
    :class:`TwoStageWarmupPolyLR`.
    """
    KEYS = ('decay_rate', 'decay_query_blocks')

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg=None) -> None:
        # mmengine builds one plain group without calling add_params when paramwise_cfg
        # is empty: no decay and no tags, so it is required
        if not isinstance(paramwise_cfg, dict) or 'decay_rate' not in paramwise_cfg:
            raise ValueError(f'{type(self).__name__}: paramwise_cfg={paramwise_cfg!r} needs '
                             "decay_rate (EoMT's llrd: 0.8, or 1.0 for no decay); valid keys: "
                             f'{self.KEYS}')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def add_params(self, params: List[dict], module: nn.Module, **kwargs) -> None:
        from mmvitpe.models.eomt import EoMT  # the engine is imported before the models
        owner = type(self).__name__
        cfg = self.paramwise_cfg
        if set(cfg) - set(self.KEYS):
            raise ValueError(f'{owner}: paramwise_cfg keys {sorted(cfg)}; valid: {self.KEYS}')
        rate = check_real(owner, 'paramwise_cfg.decay_rate', cfg['decay_rate'],
                          low=0., high=1., low_open=True)
        decay_queries = check_bool(owner, 'paramwise_cfg.decay_query_blocks',
                                   cfg.get('decay_query_blocks', True))
        if is_model_wrapper(module):
            module = module.module
        backbone = getattr(module, 'backbone', None)
        if not isinstance(backbone, EoMT):
            raise TypeError(f'{owner} is for a model whose backbone is mmvitpe.EoMT, got '
                            f'{type(backbone).__name__}')
        depth, first_query_block = backbone.depth, backbone.depth - backbone.num_blocks
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            inner = name[len('backbone.'):] if name.startswith('backbone.') else None
            part, scale = 'vit', 1.
            if inner is None or inner.split('.')[0] in backbone.HEAD_PARTS:
                part = 'head'
            else:
                # the trunk's layer ids: stem 0, block i at i + 1 (a PE parameter at
                # its block's), the final norm at depth + 1; EoMT puts the stem with
                # block 0
                block = max(backbone.get_layer_depth(inner)[0] - 1, 0)
                if block < depth and (decay_queries or block < first_query_block):
                    scale = rate ** (depth - 1 - block)
            group = dict(params=[param], lr=self.base_lr * scale, eomt_part=part)
            if self.base_wd is not None:  # else the optimizer's default
                group['weight_decay'] = self.base_wd
            params.append(group)


@PARAM_SCHEDULERS.register_module()
class TwoStageWarmupPolyLR(LRSchedulerMixin, _ParamScheduler):
    """EoMT's schedule, per iteration, over the groups of
    :class:`EoMTOptimizerConstructor`: the heads warm up linearly over
    ``warmup_iters[0]`` iterations, then decay as ``(1 - t / T) ** power`` to 0
    at ``end``; the ViT stays at 0 for those iterations, warms up over
    ``warmup_iters[1]`` more, then decays to 0 at ``end`` likewise (``t``, ``T``
    counted from the end of each part's warmup).

    Args:
        warmup_iters: (heads' warmup, the ViT's warmup after it), EoMT's
            ``warmup_steps``.
        power: Poly power (EoMT: 0.9).
        begin, end: Iterations it spans (``end``: the last training iteration).
    """

    def __init__(self, optimizer, warmup_iters, power: float = 0.9, begin: int = 0,
                 end: int = None, by_epoch: bool = False, **kwargs) -> None:
        owner = type(self).__name__
        self.warmup_iters = check_int_list(owner, 'warmup_iters', warmup_iters, minimum=0)
        if len(self.warmup_iters) != 2:
            raise ValueError(f'{owner}: warmup_iters={warmup_iters} must be (heads, ViT)')
        self.power = check_positive(owner, 'power', power)
        begin = check_int(owner, 'begin', begin, minimum=0)
        if end is None:
            raise ValueError(f'{owner}: end is required (the last training iteration)')
        end = check_int(owner, 'end', end)
        if by_epoch:
            raise ValueError(f'{owner} steps per iteration: by_epoch must be False')
        if end <= begin + sum(self.warmup_iters):
            raise ValueError(f'{owner}: end={end} must come after begin + both warmups '
                             f'({begin + sum(self.warmup_iters)})')
        opt = getattr(optimizer, 'optimizer', optimizer)
        parts = {g.get('eomt_part') for g in opt.param_groups}
        if not parts <= {'vit', 'head'} or None in parts:
            raise ValueError(f"{owner} needs the param groups of constructor='mmvitpe."
                             "EoMTOptimizerConstructor' (each tagged 'vit' or 'head')")
        super().__init__(optimizer, begin=begin, end=end, by_epoch=False, **kwargs)

    def _get_value(self) -> list:
        step, total = self.last_step, self.end - self.begin
        head_warmup, vit_warmup = self.warmup_iters
        values = []
        for group, base in zip(self.optimizer.param_groups, self.base_values):
            # mmengine's OptimWrapper adds one untagged group of its base settings (the
            # logged lr): it follows the heads, at the base lr
            head = group.get('eomt_part', 'head') == 'head'
            delay, warmup = (0, head_warmup) if head else (head_warmup, vit_warmup)
            if step < delay:
                values.append(0.)
            elif step < delay + warmup:
                values.append(base * (step - delay) / warmup)
            else:
                done = (step - delay - warmup) / (total - delay - warmup)
                values.append(base * max(0., 1. - done) ** self.power)
        return values
