"""timm models: DeiT-Ti/S/B-sized classifiers with each PE scheme, built the timm way.

So that a PE scheme can be pretrained on ImageNet with timm's own ``train.py``,
whose ``--device-modules`` imports mmvitpe (which registers these models)::

    python train.py --device-modules mmvitpe --model deit_tiny_mpvg_patch16_224 ...

A scheme's arguments go through ``--model-kwargs pos_embed="{'hidden': 32}"``.

Names: ``deit_{tiny,small,base}_{scheme}_patch16_224`` pool with GAP and have
no class token (MPVG/PVG style); ``..._cls_patch16_224`` use a class token
(ViT/DeiT/LaPE style), registered for every scheme that supports one.
``test_pevit_{scheme}[_cls]`` are 64-wide, 4-block versions for fast tests,
as timm registers ``test_vit``.

:class:`TimmPEViT` is :class:`~mmvitpe.models.PEViT` (same parameter names, so
its checkpoints load straight into ViTAdapter/ViTBaseline with the same
scheme) plus timm's ``VisionTransformer`` contract: ``in_chans``,
``num_classes``, ``num_features``, ``forward_features`` -> tokens,
``forward_head``, ``reset_classifier``, ``forward_intermediates``,
``prune_intermediate_layers``, ``feature_info`` (``features_only=True``),
``set_grad_checkpointing``, and a ``group_matcher`` that gives exactly
:meth:`PEViT.get_layer_depth`'s layer ids, so timm's ``--layer-decay`` equals
:class:`~mmvitpe.engine.LayerDecayOptimizerConstructor`.
"""
from contextlib import nullcontext
from typing import Callable, List, Optional, Tuple, Union

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices  # what timm's own ViT uses
from timm.models.vision_transformer import global_pool_nlc
from torch import Tensor, nn

from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.utils.validation import check_bool
from .vit import ARCH_SETTINGS, PEViT

ARCHS = ('tiny', 'small', 'base')
POOL_TYPES = ('', 'avg', 'avgmax', 'max', 'token')  # timm's VisionTransformer's, less attention pools


class UnsupportedPool(ValueError, AssertionError):
    """A pool type this model cannot take. timm's contract (and its tests) expect an
    AssertionError from ``reset_classifier``; callers of ours expect a ValueError."""


class TimmPEViT(PEViT):
    """:class:`PEViT` with a classifier head and the interface timm expects of a
    ViT classifier.

    Args:
        img_size: Image side the model is (pre)trained at (PEViT's ``pretrain_size``).
        in_chans: Image channels.
        num_classes: Classes of the linear head; 0 for none (pooled features).
        global_pool: '' | 'avg' | 'avgmax' | 'max' | 'token'; default 'token'
            with a class token, else 'avg'.
        class_token: Prepend a class token.
        drop_rate: Dropout before the head (timm's meaning).
        proj_drop_rate: Dropout after the PE and in the blocks (PEViT's ``drop_rate``).
        device, dtype: Where and in which dtype the parameters are created
            (timm's factory passes them; ``device='meta'`` allocates nothing).
        **kwargs: PEViT's other arguments (arch, pos_embed, drop_path_rate, ...).
    """

    def __init__(self, img_size: Union[int, Tuple[int, int]] = 224, in_chans: int = 3,
                 num_classes: int = 1000, global_pool: Optional[str] = None,
                 class_token: bool = False, drop_rate: float = 0., proj_drop_rate: float = 0.,
                 device: Optional[Union[str, torch.device]] = None,
                 dtype: Optional[torch.dtype] = None, **kwargs) -> None:
        with torch.device(device) if device is not None else nullcontext():
            super().__init__(pretrain_size=img_size, in_channels=in_chans,
                             class_token=class_token, drop_rate=proj_drop_rate, **kwargs)
            self.in_chans = in_chans
            self.has_class_token = class_token
            self.num_features = self.head_hidden_size = self.embed_dim
            self.head_drop = nn.Dropout(drop_rate)
            if global_pool is None:
                global_pool = 'token' if class_token else 'avg'
            self.reset_classifier(num_classes, global_pool)
        if dtype is not None:
            self.to(dtype)
        self.feature_info = [dict(module=f'blocks.{i}', num_chs=self.embed_dim,
                                  reduction=self.patch_size) for i in range(self.depth)]

    # ---- head ---------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new head (on the model's device and dtype); ``global_pool=None`` keeps the pool."""
        if global_pool is not None:
            if global_pool not in POOL_TYPES:
                raise UnsupportedPool(f'global_pool={global_pool!r}; valid: {POOL_TYPES}')
            if global_pool == 'token' and self.cls_token is None:
                raise UnsupportedPool("global_pool='token' needs the class token; this model "
                                      "has none (use a ..._cls_... model or 'avg')")
            self.global_pool = global_pool
        self.num_classes = num_classes
        ref = self.patch_embed.proj.weight
        if num_classes > 0:
            self.head = nn.Linear(self.embed_dim, num_classes, device=ref.device, dtype=ref.dtype)
            trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)
        else:
            self.head = nn.Identity()
        self.head.train(self.training)

    def pool(self, x: Tensor, pool_type: Optional[str] = None) -> Tensor:
        return global_pool_nlc(x, self.global_pool if pool_type is None else pool_type,
                               self.num_prefix_tokens)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.head_drop(self.pool(x))
        return x if check_bool(type(self).__name__, 'pre_logits', pre_logits) else self.head(x)

    # ---- features -----------------------------------------------------------------
    def forward_features(self, x: Tensor) -> Tensor:
        """Tokens after the final norm (and the PE's final site): (B, prefix + H*W, D).

        (PEViT's returns the grid too; timm's contract is one tensor.)
        """
        x, state = self.embed(x)
        return self.finalize(self.forward_blocks(x, state), state)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: Tensor, indices: Optional[Union[int, List[int]]] = None,
                              return_prefix_tokens: bool = False, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = 'NCHW',
                              intermediates_only: bool = False):
        """timm's ``VisionTransformer.forward_intermediates``: block outputs
        ``indices`` (last n if an int, all if None), as NCHW maps or NLC tokens.

        ``norm`` applies what ``forward_features`` applies at the end (the final
        norm and the PE's final site), so the last normed intermediate is
        ``forward_features``' patch tokens.
        """
        if output_fmt not in ('NCHW', 'NLC'):
            raise ValueError(f"output_fmt={output_fmt!r}; valid: 'NCHW', 'NLC'")
        return_prefix_tokens, norm, stop_early, intermediates_only = (
            check_bool(type(self).__name__, name, value) for name, value in (
                ('return_prefix_tokens', return_prefix_tokens), ('norm', norm),
                ('stop_early', stop_early), ('intermediates_only', intermediates_only)))
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        batch = x.shape[0]
        x, state = self.embed(x)
        intermediates = []
        last = max_index + 1 if stop_early else len(self.blocks)
        for i in range(last):
            x = self.forward_blocks(x, state, i, i + 1)
            if i in take_indices:
                intermediates.append(self.finalize(x, state) if norm else x)
        prefix = [y[:, :self.num_prefix_tokens] for y in intermediates]
        intermediates = [y[:, self.num_prefix_tokens:] for y in intermediates]
        if output_fmt == 'NCHW':
            h, w = state.grid
            intermediates = [y.reshape(batch, h, w, -1).permute(0, 3, 1, 2).contiguous()
                             for y in intermediates]
        if return_prefix_tokens and self.num_prefix_tokens:
            intermediates = list(zip(intermediates, prefix))
        if intermediates_only:
            return intermediates
        return self.finalize(x, state), intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1,
                                  prune_norm: bool = False, prune_head: bool = True) -> List[int]:
        """Drop the blocks after the last of ``indices`` (and the norm / head).

        The PE's parameters of the dropped blocks, and its final-norm term when the
        norm goes, are frozen rather than removed: a scheme owns its per-block
        containers, and they keep the state dict loadable. Frozen, they are no
        unused trainable parameters (DDP) and no optimizer group (timm skips them).
        """
        prune_norm, prune_head = (check_bool(type(self).__name__, name, value) for name, value
                                  in (('prune_norm', prune_norm), ('prune_head', prune_head)))
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[:max_index + 1]
        if prune_norm:
            self.norm = None
        if prune_head:
            self.reset_classifier(0, '')
        for name, param in self.pe.named_parameters():
            position = self.pe.stack_position(name)
            if max_index < position < self.depth or (position >= self.depth and self.norm is None):
                param.requires_grad_(False)
        return take_indices

    # ---- training -----------------------------------------------------------------
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.with_cp = check_bool(type(self).__name__, 'enable', enable)

    def group_matcher(self, coarse: bool = False) -> Callable[[str], int]:
        """Layer id of a parameter (or module) name for timm's layer-wise lr decay:
        :meth:`get_layer_depth`'s, so ``--layer-decay`` gives our constructor's scales.
        (A regex dict cannot follow the schemes' per-block parameters, hence a callable,
        which timm's ``group_parameters`` takes.) ``coarse`` changes nothing: a ViT
        block is already the coarsest stage."""
        check_bool(type(self).__name__, 'coarse', coarse)
        return lambda name: self.get_layer_depth(name)[0]


def _cfg(**kwargs) -> dict:
    """DeiT's evaluation settings; any input size works (dynamic patch padding)."""
    return {**dict(url='', num_classes=1000, input_size=(3, 224, 224), pool_size=None,
                   crop_pct=0.875, interpolation='bicubic', fixed_input_size=False,
                   mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
                   first_conv='patch_embed.proj', classifier='head', license='apache-2.0'),
            **kwargs}


# timm's own fast-test models (test_vit, test_resnet, ...) are registered the same way
TEST_ARCH = dict(embed_dim=64, depth=4, num_heads=2)
TEST_SIZE = 160


def _variants():
    """(name, scheme, class_token, model args, pretrained cfg) of every registered model:
    ``deit_{tiny,small,base}_{scheme}[_cls]_patch16_224`` and ``test_pevit_{scheme}[_cls]``."""
    for scheme in sorted(POS_ENCODINGS.module_dict):
        for class_token in (False, True):
            if class_token and not POS_ENCODINGS.module_dict[scheme].supports_class_token:
                continue
            cls = '_cls' if class_token else ''
            for arch in ARCHS:
                yield (f'deit_{arch}_{scheme.lower()}{cls}_patch16_224', scheme, class_token,
                       dict(arch=arch), _cfg())
            yield (f'test_pevit_{scheme.lower()}{cls}', scheme, class_token,
                   dict(arch=TEST_ARCH, img_size=TEST_SIZE),
                   _cfg(input_size=(3, TEST_SIZE, TEST_SIZE), crop_pct=0.95))


# read by timm's register_model: the pretrained cfg of each name
default_cfgs = generate_default_cfgs({name: cfg for name, *_, cfg in _variants()})


def create_timm_pevit(variant: str, scheme: str, class_token: bool, pretrained: bool = False,
                      **kwargs) -> TimmPEViT:
    """timm's ``_create_vision_transformer`` for our models.

    ``pos_embed`` may give the scheme's arguments (e.g. ``dict(hidden=32)``);
    its ``type``, if given, must be the model's scheme.
    """
    if check_bool(variant, 'pretrained', pretrained):
        raise ValueError(f'{variant}: mmvitpe ships no ImageNet weights; train them with '
                         "timm's train.py, or pass checkpoint_path= to timm.create_model")
    pos_embed = dict(kwargs.pop('pos_embed', None) or {})
    if pos_embed.setdefault('type', scheme) != scheme:
        raise ValueError(f"{variant}: pos_embed type {pos_embed['type']!r} is not the "
                         f"model's scheme {scheme!r}; pick the model named for that scheme")
    out_indices = kwargs.pop('out_indices', 3)
    return build_model_with_cfg(
        TimmPEViT, variant, pretrained,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        pos_embed=pos_embed, class_token=class_token, **kwargs)


def _register(name: str, scheme: str, class_token: bool, model_args: dict) -> None:
    def factory(pretrained: bool = False, **kwargs) -> TimmPEViT:
        return create_timm_pevit(name, scheme, class_token, pretrained,
                                 **dict(model_args, **kwargs))
    factory.__name__ = factory.__qualname__ = name
    arch = model_args['arch']
    size = ARCH_SETTINGS[arch] if isinstance(arch, str) else arch
    factory.__doc__ = (f'ViT {size["embed_dim"]} wide, {size["depth"]} blocks, '
                       f'{size["num_heads"]} heads, with {scheme} and '
                       f'{"a class token" if class_token else "GAP"}.')
    register_model(factory)


for _name, _scheme, _class_token, _model_args, _ in _variants():
    _register(_name, _scheme, _class_token, _model_args)
