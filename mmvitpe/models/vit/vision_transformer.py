"""A plain, headless ViT whose positional encoding is a config switch.

The trunk of every dense protocol (``backbones/``) and of the timm classifier
(``timm_models.TimmPEViT``, which adds the head). The PE scheme is consulted at
its fixed sites (see ``pos_encodings/base.py``); the trunk never looks at which
scheme it is.
"""
import logging
import re
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.utils.checkpoint as cp
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from timm.layers import PatchEmbed, resample_patch_embed
from torch import Tensor, nn

from mmvitpe.registry import MODELS
from mmvitpe.utils.validation import (check_bool, check_image, check_int, check_int_list,
                                      check_positive, check_rate, check_real, check_size_pair)
from mmvitpe.weights.ownership import Claim, ForeignWeights
from mmvitpe.weights.reader import (backbone_part, non_finite, read_source_config,
                                    read_state_dict)
from mmvitpe.weights.transfer import load_pretrained, remap
from ..pos_encodings import Grid, PEState, build_pos_encoding
from ..pos_encodings.base import skip_leading
from .arch import resolve_arch
from .attention import WINDOW_PADDINGS
from .block import Block

# Source keys that only classification models have.
CLASSIFIER_KEYS = re.compile(r'^(head|head_dist|fc_norm|pre_logits|dist_token)(\.|$)')
# The ViT core's parameters: a checkpoint must provide them, but for the two rules of
# VIT_NEW_START (the PE scheme's own are its business, see new_start_reason).
VIT_CORE_KEYS = re.compile(r'^(patch_embed\.|cls_token$|reg_token$|norm\.|blocks\.\d+\.)')
VIT_NEW_START = (
    (re.compile(r'^blocks\.\d+\.attn\.qkv\.bias$'),
     'the checkpoint has no qkv bias (its family has none); starts at zero, the same as none'),
    (re.compile(r'^blocks\.\d+\.ls[12]\.gamma$'),
     'the checkpoint has no layer scales (its family has none); starts at '
     'layer_scale_init_value'))


def _init_linear_and_norm(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


@MODELS.register_module()
class PEViT(ForeignWeights, BaseModule):
    """Headless vision transformer with a pluggable positional encoding.

    Called on an image it returns the patch tokens after the blocks
    ``out_indices`` as (B, D, H/patch, W/patch) maps, as mmpretrain's ViT; the
    stages (``embed``, ``forward_blocks``, ``finalize``, ``read_out``) are what
    the dense protocols and the classifier build on.

    Args:
        arch: 'tiny' | 'small' | 'base' | 'large' (DeiT/ViT sizes), a
            foundation ViT ('dinov2_small', 'dinov3_base', 'eva02_large', ...;
            see ``foundation.py``) or a dict with embed_dim, depth, num_heads
            (and any of :data:`ARCH_DEFAULTS`).
        embed_dim, depth, num_heads: Override the arch's values. So does every
            argument below that the arch sets (None: the arch's value, else
            the default of :data:`ARCH_DEFAULTS` given here).
        pos_embed: The PE scheme, ``dict(type=<scheme>, **args)``, or a list
            of them (a composite); see ``mmvitpe.models.pos_encodings``.
            Default: the arch's, else LearnedPE. A dict of the arch's own scheme
            keeps the arch's other options of it (``class_slot``, ``antialias``).
        patch_size: Patch side in pixels.
        in_channels: Image channels.
        pretrain_size: Image side the model is (pre)trained at; learned PE
            tables are stored for the grid ``pretrain_size // patch_size``.
        input_size: Image side the model is fine-tuned at (default:
            ``pretrain_size``); a scheme whose tables are sized for the
            attention grid sizes its global blocks' for this grid
            (``RelPosDecomposed``; ViTDet: 1024).
        class_token: Prepend a class token.
        num_register_tokens: Register tokens after the class token (timm
            ``reg_tokens``, DINOv2 ``register_tokens``); they get no absolute
            PE, no rotation, and no pooling. Each scheme documents what prefix
            tokens get.
        out_indices: Blocks whose tokens ``forward`` returns (negative: from
            the end); each passes through ``finalize`` (the final norm and the
            PE's final site) when the model has a final norm.
        mlp_ratio: MLP hidden width (the gated width for SwiGLU) / embed_dim.
        qkv_bias: Bias in the qkv projections.
        drop_rate: Dropout after the PE and in the blocks.
        attn_drop_rate: Dropout on attention weights.
        drop_path_rate: Stochastic depth, increasing linearly over the blocks.
        layer_scale_init_value: Init of per-channel residual scales (the
            foundation archs: 1e-5 for DINOv2/v3); none when neither this nor
            the arch sets it.
        window_size: Window side (tokens) of the blocks in
            ``window_block_indexes``; or a list with one entry per block
            (0 or None: global attention), as the original ViT-Adapter accepts.
            Windows cut the patch tokens only: in a windowed block each patch
            token attends to its window and to every prefix token, and the
            prefix tokens attend to all tokens (see ``Attention``).
        window_block_indexes: Blocks that attend within windows of
            ``window_size`` when that is an int; the others attend globally.
        window_padding: How a windowed block fills its grid up to whole
            windows: 'qkv' zero-pads q, k and v (ViT-Adapter), 'tokens'
            zero-pads the normed tokens before the qkv projection, so padded
            keys and values are its biases (detectron2's ViTDet).
        with_cp: Gradient checkpointing per block.
        final_norm: Apply the final LayerNorm (and the PE's final site); EVA-02
            has none (timm's ``fc_norm`` after pooling is the classifier's).
        norm_eps: LayerNorm eps.
        mlp_layer: 'mlp' (GELU), 'swiglu_packed' or 'swiglu' (timm layers; see
            ``block.MLP_LAYERS``).
        mlp_norm: LayerNorm on the MLP's hidden features (EVA-02's sub-LN).
        mlp_align: Round the 'swiglu' hidden width up to this multiple.
        init_cfg: mmengine initialisation config. ``dict(type='Pretrained',
            checkpoint=PATH, prefix=None, strict=True)`` loads released weights
            of any supported layout and PE scheme (see ``mmvitpe.weights``)
            when ``init_weights()`` runs, never in ``__init__``; ``strict``
            fails on anything the load report cannot explain. ``key`` picks
            the file's entry, e.g. ``key='state_dict_ema'`` for the EMA
            weights of a timm checkpoint.
        pretrained: Deprecated spelling of ``init_cfg=dict(type='Pretrained',
            checkpoint=...)`` (mmseg's ``model.pretrained`` lands here).
    """

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 embed_dim: Optional[int] = None,
                 depth: Optional[int] = None,
                 num_heads: Optional[int] = None,
                 pos_embed: Union[dict, list, None] = None,
                 patch_size: Optional[int] = None,
                 in_channels: int = 3,
                 pretrain_size: Union[int, Tuple[int, int], None] = None,
                 input_size: Union[int, Tuple[int, int], None] = None,
                 class_token: Optional[bool] = None,
                 num_register_tokens: Optional[int] = None,
                 out_indices: Union[int, Sequence[int]] = -1,
                 mlp_ratio: Optional[float] = None,
                 qkv_bias: Optional[bool] = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: Optional[float] = None,
                 window_size: Union[int, Sequence[Optional[int]]] = 0,
                 window_block_indexes: Sequence[int] = (),
                 window_padding: str = 'qkv',
                 with_cp: bool = False,
                 final_norm: Optional[bool] = None,
                 norm_eps: Optional[float] = None,
                 mlp_layer: Optional[str] = None,
                 mlp_norm: Optional[bool] = None,
                 mlp_align: Optional[int] = None,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('give either pretrained or init_cfg, not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)
        settings = resolve_arch(arch, dict(
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, patch_size=patch_size,
            pretrain_size=pretrain_size, class_token=class_token,
            num_register_tokens=num_register_tokens, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
            layer_scale_init_value=layer_scale_init_value, norm_eps=norm_eps,
            mlp_layer=mlp_layer, mlp_norm=mlp_norm, mlp_align=mlp_align, pos_embed=pos_embed,
            final_norm=final_norm))
        owner = type(self).__name__
        self.embed_dim, self.depth, self.num_heads = (
            check_int(owner, k, settings[k]) for k in ('embed_dim', 'depth', 'num_heads'))
        if self.embed_dim % self.num_heads:
            raise ValueError(f'{owner}: embed_dim={self.embed_dim} is not divisible by '
                             f'num_heads={self.num_heads}')
        (patch_size, pretrain_size, class_token, num_register_tokens, pos_embed,
         layer_scale_init_value, norm_eps, final_norm, mlp_ratio) = (settings[k] for k in (
             'patch_size', 'pretrain_size', 'class_token', 'num_register_tokens', 'pos_embed',
             'layer_scale_init_value', 'norm_eps', 'final_norm', 'mlp_ratio'))
        block_args = {k: settings[k] for k in ('mlp_ratio', 'qkv_bias', 'mlp_layer',
                                                'mlp_norm', 'mlp_align')}
        self.patch_size = check_int(owner, 'patch_size', patch_size)
        self.in_channels = check_int(owner, 'in_channels', in_channels)
        pretrain_size = check_size_pair(owner, 'pretrain_size', pretrain_size)
        self.pretrain_grid = (pretrain_size[0] // patch_size, pretrain_size[1] // patch_size)
        if min(self.pretrain_grid) < 1:
            raise ValueError(f'{owner}: pretrain_size={pretrain_size} with patch_size='
                             f'{patch_size} gives a {self.pretrain_grid[0]}x'
                             f'{self.pretrain_grid[1]} patch grid; it must be >= patch_size')
        input_size = (pretrain_size if input_size is None
                      else check_size_pair(owner, 'input_size', input_size))
        self.input_grid = (input_size[0] // patch_size, input_size[1] // patch_size)
        if min(self.input_grid) < 1:
            raise ValueError(f'{owner}: input_size={input_size} with patch_size={patch_size} '
                             f'gives a {self.input_grid[0]}x{self.input_grid[1]} patch grid; '
                             'it must be >= patch_size')
        if int(self.embed_dim * check_positive(owner, 'mlp_ratio', mlp_ratio)) < 1:
            raise ValueError(f'{owner}: mlp_ratio={mlp_ratio} gives a zero-width MLP at '
                             f'embed_dim={self.embed_dim}')
        for name, rate in (('drop_rate', drop_rate), ('attn_drop_rate', attn_drop_rate),
                           ('drop_path_rate', drop_path_rate)):
            check_rate(owner, name, rate)
        check_positive(owner, 'norm_eps', norm_eps)
        if layer_scale_init_value is not None:
            check_real(owner, 'layer_scale_init_value', layer_scale_init_value)
        class_token, final_norm = (check_bool(owner, k, settings[k])
                                   for k in ('class_token', 'final_norm'))
        for flag in ('qkv_bias', 'mlp_norm'):
            block_args[flag] = check_bool(owner, flag, block_args[flag])
        block_args['mlp_align'] = check_int(owner, 'mlp_align', block_args['mlp_align'], minimum=0)
        self.num_register_tokens = check_int(owner, 'num_register_tokens', num_register_tokens,
                                             minimum=0)
        self.num_prefix_tokens = (1 if class_token else 0) + self.num_register_tokens
        self.out_indices = self._check_out_indices(out_indices)
        self.window_sizes = self._per_block_windows(window_size, window_block_indexes)
        if window_padding not in WINDOW_PADDINGS:
            raise ValueError(f'{owner}: window_padding={window_padding!r}; valid: '
                             f'{WINDOW_PADDINGS}')
        self.with_cp = check_bool(owner, 'with_cp', with_cp)

        # dynamic_img_pad: any input size; the last row/column of patches is zero-padded.
        self.patch_embed = PatchEmbed(
            img_size=pretrain_size, patch_size=patch_size, in_chans=in_channels,
            embed_dim=self.embed_dim, output_fmt='NHWC', strict_img_size=False,
            dynamic_img_pad=True)
        self.cls_token = (nn.Parameter(torch.zeros(1, 1, self.embed_dim))
                          if class_token else None)
        self.reg_token = (nn.Parameter(torch.zeros(1, num_register_tokens, self.embed_dim))
                          if num_register_tokens else None)
        self.pos_drop = nn.Dropout(drop_rate)
        self.pe = build_pos_encoding(
            pos_embed if pos_embed is not None else dict(type='LearnedPE'),
            embed_dim=self.embed_dim, num_heads=self.num_heads, depth=self.depth,
            num_prefix_tokens=self.num_prefix_tokens,
            num_register_tokens=self.num_register_tokens, pretrain_grid=self.pretrain_grid,
            input_grid=self.input_grid, window_sizes=tuple(self.window_sizes))
        rates = torch.linspace(0, drop_path_rate, self.depth, device='cpu').tolist()
        self.blocks = nn.ModuleList([
            Block(self.embed_dim, self.num_heads, index=i, window_size=self.window_sizes[i],
                  drop_path=rates[i], layer_scale_init_value=layer_scale_init_value,
                  norm_eps=norm_eps, drop=drop_rate, attn_drop=attn_drop_rate,
                  window_padding=window_padding, **block_args)
            for i in range(self.depth)])
        self.norm = nn.LayerNorm(self.embed_dim, eps=norm_eps) if final_norm else None
        if self.pe.acts_at_final_norm and self.norm is None:
            raise ValueError(f'{type(self.pe).__name__} adds a term at the final norm, which '
                             'this model does not apply: set final_norm=True or pick a '
                             'scheme that does not act there')

        # foreign checkpoints arriving through load_state_dict (load_from, resume)
        self._register_load_state_dict_pre_hook(self._adopt_foreign_keys)
        # the shape check runs before any subclass's forward touches the image
        self.register_forward_pre_hook(self._check_input, with_kwargs=True)
        self.blocks.apply(_init_linear_and_norm)
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=0.02)
        if self.reg_token is not None:  # as DINOv2
            nn.init.normal_(self.reg_token, std=1e-6)

    def _per_block_windows(self, window_size, window_block_indexes) -> list:
        owner = type(self).__name__
        indexes = check_int_list(owner, 'window_block_indexes', window_block_indexes)
        if isinstance(window_size, (list, tuple)):
            sizes = [0 if w is None else check_int(owner, f'window_size[{i}]', w, minimum=0)
                     for i, w in enumerate(window_size)]
            if len(sizes) != self.depth or indexes:
                raise ValueError(f'window_size as a list needs one entry per block ({self.depth}) '
                                 f'and no window_block_indexes; got {list(window_size)}')
        else:
            window_size = check_int(owner, 'window_size', window_size, minimum=0)
            bad = [i for i in indexes if not 0 <= i < self.depth]
            if bad:
                raise ValueError(f'window_block_indexes {bad} outside 0..{self.depth - 1}')
            if indexes and window_size <= 0:
                raise ValueError('window_block_indexes is set but window_size is not positive')
            if window_size and not indexes:
                raise ValueError(f'{owner}: window_size={window_size} without '
                                 'window_block_indexes windows no block; name the blocks in '
                                 'window_block_indexes, or give window_size as a per-block list')
            sizes = [window_size if i in set(indexes) else 0 for i in range(self.depth)]
        if max(sizes) > max(self.pretrain_grid):
            raise ValueError(f'{owner}: window_size {max(sizes)} is larger than the '
                             f'{self.pretrain_grid[0]}x{self.pretrain_grid[1]} patch grid of '
                             'pretrain_size; use a window that fits the grid, or 0 (global)')
        return sizes

    def _check_out_indices(self, out_indices) -> List[int]:
        """Block indexes in 0..depth-1 (negative ones counted from the end)."""
        owner = type(self).__name__
        given = [out_indices] if isinstance(out_indices, int) and \
            not isinstance(out_indices, bool) else out_indices
        indices = check_int_list(owner, 'out_indices', given, minimum=None, allow_empty=False)
        bad = [i for i in indices if not -self.depth <= i < self.depth]
        if bad:
            raise ValueError(f'{owner}: out_indices={out_indices!r}: {bad} outside the block '
                             f'indexes {-self.depth}..{self.depth - 1}')
        return [i % self.depth for i in indices]

    def _check_input(self, module, args, kwargs) -> None:
        check_image(type(self).__name__, args[0] if args else kwargs.get('img'),
                    self.in_channels)

    # ---- weights ----------------------------------------------------------------
    def init_weights(self) -> None:
        """Load ``init_cfg`` Pretrained weights through the transfer report.

        ``map_location`` is accepted as mmengine's spelling allows, but files
        are always read to the CPU and copied to the model's device. Not an
        mmengine initializer: ``BaseModule.init_weights`` sends
        ``type='Pretrained'`` to mmengine's own ``PretrainedInit`` (a
        non-strict ``load_checkpoint`` without a report), so one of ours would
        need another type name than the one every mmdet/mmseg config uses.
        """
        cfg = self.init_cfg
        if not (isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'):
            return super().init_weights()
        unknown = set(cfg) - {'type', 'checkpoint', 'key', 'prefix', 'strict', 'map_location'}
        if unknown:
            raise ValueError(f'init_cfg Pretrained: unknown keys {sorted(unknown)}; valid: '
                             "checkpoint, key, prefix, strict, map_location")
        strict = check_bool(type(self).__name__, 'init_cfg.strict', cfg.get('strict', True))
        state = backbone_part(read_state_dict(cfg['checkpoint'], cfg.get('key')),
                              cfg.get('prefix'), source=cfg['checkpoint'])
        report = load_pretrained(self, state, strict=strict,
                                 source_config=read_source_config(cfg['checkpoint']))
        entry = f' [{cfg["key"]}]' if cfg.get('key') else ''
        print_log(f'loaded {cfg["checkpoint"]}{entry} into {type(self).__name__} '
                  f'({type(self.pe).__name__}):\n{report.table()}', logger='current')
        self._is_init = True

    # ---- the ViT core's foreign names (see mmvitpe/weights/ownership.py) ----------
    # (the layouts of whole checkpoint families, DINOv2's or transformers', are
    # translated before: mmvitpe/weights/families/)
    def claim_foreign(self, key: str, value: Tensor, prefix: str) -> Optional[Claim]:
        """Classifier parts, an absent class token, register tokens or final norm
        (dropped), and a patch kernel of another patch size (resampled, reported as
        resized)."""
        if key == 'cls_token' and self.cls_token is None:
            return Claim({}, 'this model has no class token')
        if key == 'reg_token' and self.reg_token is None:
            return Claim({}, 'this model has no register tokens')
        kernel = self.patch_embed.proj.weight
        if (key == 'patch_embed.proj.weight' and value.dim() == 4
                and value.shape[:2] == kernel.shape[:2]):
            if value.shape[2] != value.shape[3] or value.shape[2] < 1:
                raise ValueError(f'a kernel of shape {tuple(value.shape)} is not one of '
                                 f'non-empty square patches; this ViT\'s is '
                                 f'{tuple(kernel.shape)}: only a square kernel is resampled '
                                 'to another patch size')
            # another patch size (DINOv2's 14 in a 16-px ViT, as the original
            # ViT-Adapter's convert_14to16): FlexiViT's pseudo-inverse resampling keeps
            # each patch's embedding for the same content at the new patch size
            return Claim({key: resample_patch_embed(value, list(kernel.shape[-2:]))})
        if CLASSIFIER_KEYS.match(key) or (key.startswith('norm.') and self.norm is None):
            return Claim({}, 'classification head / final norm, unused here')
        return None

    def new_start_reason(self, name: str) -> Optional[str]:
        """The ViT core must come whole from the checkpoint (patch embedding, prefix
        tokens, blocks, final norm), but for a qkv bias or layer scales where the
        checkpoint has none at all; the dense backbones' own parts start new."""
        for pattern, reason in VIT_NEW_START:
            if pattern.match(name):
                return reason
        if VIT_CORE_KEYS.match(name):
            return None
        return (f'a part of {type(self).__name__} outside the ViT, which ViT checkpoints do '
                'not hold; starts at its initialisation')

    def _adopt_foreign_keys(self, state_dict, prefix, *args) -> None:
        """Rename a foreign layout under ``prefix`` in place. Our own layout passes
        as it is unless a tensor has another shape (an error naming it and both
        shapes, where torch's lenient load would leave it at its initialisation) or
        non-finite values (reported)."""
        own = self.state_dict()
        keys = [k for k in state_dict if k.startswith(prefix)]
        if all(k[len(prefix):] in own and own[k[len(prefix):]].shape == state_dict[k].shape
               and not non_finite(state_dict[k]) for k in keys):
            return
        mapped, report = remap({k[len(prefix):]: state_dict.pop(k) for k in keys}, self)
        state_dict.update({prefix + k: v for k, v in mapped.items()})
        print_log(f'loaded a checkpoint into {type(self).__name__} through the transfer '
                  f'rules:\n{report.table()}', logger='current',
                  level=logging.INFO if report.ok else logging.WARNING)

    # ---- the stages, usable one by one by the dense backbones ----------------
    def embed(self, img: Tensor) -> Tuple[Tensor, PEState]:
        """Patchify, prepend prefix tokens (class, then registers), apply the PE input site.

        Returns tokens (B, prefix + H*W, D) and the PE state for this grid.
        """
        x = self.patch_embed(img)
        b, h, w, _ = x.shape
        # token-major memory: the conv's output is channel-major, and every residual
        # add would keep that layout, making each norm and linear copy its input
        x = x.reshape(b, h * w, self.embed_dim).contiguous()
        prefix = [t.expand(b, -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        if prefix:
            x = torch.cat(prefix + [x], dim=1)
        state = self.pe.prepare((h, w), x.device, x.dtype)
        return self.pos_drop(self.pe.embed(x, state)), state

    def forward_blocks(self, x: Tensor, state: PEState, start: int = 0,
                       end: Optional[int] = None, queries: int = 0,
                       attn_mask: Optional[Tensor] = None) -> Tensor:
        """Run blocks ``start..end-1`` with the PE's per-block sites.

        ``queries`` tokens in front of the prefix tokens (EoMT's learned queries)
        are hidden from the PE at every site; ``attn_mask`` is an additive
        (B, 1, N, N) logit term for these blocks (see ``Block.forward``).
        """
        for block in self.blocks[start:end]:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(block, x, self.pe, state, queries, attn_mask,
                                  use_reentrant=False)
            else:
                x = block(x, self.pe, state, queries, attn_mask)
            x = skip_leading(self.pe.after_block, x, queries, block.index, state)
        return x

    def finalize(self, x: Tensor, state: PEState, queries: int = 0) -> Tensor:
        """Final norm and the PE's final site (identity without a final norm)."""
        if self.norm is None:
            return x
        return skip_leading(self.pe.final, self.norm(x), queries, state)

    # ---- optimisation helpers --------------------------------------------------
    def get_layer_depth(self, name: str) -> Tuple[int, int]:
        """Layer id of a parameter for layer-wise lr decay, and the layer count.

        Patch embedding, class and register tokens and the PE's shared tables are layer 0,
        block i (and the PE parameters that belong to block i, e.g.
        ``pe.tables.<i>``) is layer i + 1, everything else (adapter, norms, a
        PE term at the final norm) is the top layer ``depth + 1``. Same
        convention as mmpretrain's ViT.
        """
        num_layers = self.depth + 2
        parts = name.split('.')
        if parts[0] in ('cls_token', 'reg_token', 'patch_embed'):
            return 0, num_layers
        if parts[0] == 'blocks':
            return int(parts[1]) + 1, num_layers
        if parts[0] == 'pe':
            return self.pe.stack_position('.'.join(parts[1:])) + 1, num_layers
        return num_layers - 1, num_layers

    def no_weight_decay(self) -> set:
        """Parameter names that take no weight decay (PE parameters, class and
        register tokens)."""
        names = {n for n, _ in self.named_parameters() if n.startswith('pe.')}
        return names | {n for n in ('cls_token', 'reg_token') if getattr(self, n) is not None}

    def read_out(self, img: Tensor, indices: Sequence[int]) -> List[Tensor]:
        """The patch tokens after each of blocks ``indices`` (non-decreasing), through
        :meth:`finalize`, as (B, D, H, W) maps (mmpretrain's ``out_indices``
        read-out); the blocks after the last of them do not run."""
        x, state = self.embed(img)
        maps, start = [], 0
        for index in indices:
            x = self.forward_blocks(x, state, start, index + 1)
            start = index + 1
            maps.append(tokens_to_map(self.finalize(x, state)[:, self.num_prefix_tokens:],
                                      state.grid))
        return maps

    # ---- whole-model entry points --------------------------------------------
    def forward_features(self, img: Tensor) -> Tuple[Tensor, Grid]:
        """Tokens after the final norm (B, prefix + H*W, D) and the grid."""
        x, state = self.embed(img)
        return self.finalize(self.forward_blocks(x, state), state), state.grid

    def forward(self, img: Tensor) -> Tuple[Tensor, ...]:
        """The patch tokens after each of ``out_indices`` as (B, D, H, W) maps."""
        order = sorted(set(self.out_indices))
        maps = dict(zip(order, self.read_out(img, order)))
        return tuple(maps[i] for i in self.out_indices)


def tokens_to_map(tokens: Tensor, grid: Grid) -> Tensor:
    """(B, H*W, D) patch tokens -> (B, D, H, W), a view (channels-last strides)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)
