"""ViT-Adapter (Chen et al., "Vision Transformer Adapter for Dense Predictions",
ICLR 2023) on the PE-pluggable ViT core; one class for mmdet and mmseg.

    img -> SPM -> c1 (1/4) and c = [c2 (1/8), c3 (1/16), c4 (1/32)] + level embeds
    img -> patch embed + PE -> x (1/patch)
    per interaction i: x = inject(x, c); x = ViT blocks of i; c = extract(c, x)
    c2, c3, c4 -> maps; c1 += up(c2); c_k += resize(ViT map);  out_k = norm_k(c_k)

Output: four maps with ``embed_dim`` channels at strides 4, 8, 16, 32, sized
ceil(H / stride) x ceil(W / stride) for any input size (the input is padded
to a multiple of 32 inside, and the outputs are cropped back).

Patch 14 (DINOv2, EVA-02) runs natively: the ViT grid is ceil(H_pad / 14) x
ceil(W_pad / 14) tokens over the 32-padded image (the ViT zero-pads the last
patch row and column), the deformable attentions place their reference points
by pixel position across the two grids, and the ViT maps are resampled at each
level's pixel centres. The original's 14 -> 16 conversion is ``patch_size=16,
pretrain_size=592`` on a DINOv2 arch: the patch kernel is resampled when the
weights load (reported as resized) and the 37 x 37 table is kept as a grid of
16-px patches.
"""
import math
from contextlib import ExitStack
from typing import Dict, Optional, Sequence, Tuple

import torch
from mmcv.cnn import build_norm_layer
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor, nn

from mmvitpe.registry import MODELS
from mmvitpe.utils.validation import (check_bool, check_int, check_int_list, check_norm_cfg,
                                      check_positive, check_real)
from ..layers.adapter_modules import DeformInputs, InteractionBlock, SpatialPriorModule
from ..layers.deformable_attention import DeformableAttention
from ..vit import PEViT, resolve_arch
from .dense import (OUT_STRIDES, normed_outputs, pad_to_multiple, prefix_tokens_off_by_default,
                    resample_to_level, tokens_to_map)

# Sizes of the original configs (ref: czczup/ViT-Adapter detection and
# segmentation configs). ``drop_path_rate`` is the detection/segmentation value.
ADAPTER_SETTINGS: Dict[str, dict] = {
    'tiny': dict(arch='tiny', deform_num_heads=6, deform_ratio=1.0, drop_path_rate=0.1,
                 interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]]),
    'small': dict(arch='small', deform_num_heads=6, deform_ratio=1.0, drop_path_rate=0.2,
                  interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]]),
    'base': dict(arch='base', deform_num_heads=12, deform_ratio=0.5, drop_path_rate=0.3,
                 interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]]),
    'large': dict(arch='large', deform_num_heads=16, deform_ratio=0.5, drop_path_rate=0.4,
                  interaction_indexes=[[0, 5], [6, 11], [12, 17], [18, 23]]),
}
VIT_FEATURE_MODES = ('last', 'per_stage', None)


@MODELS.register_module()
class ViTAdapter(PEViT):
    """ViT-Adapter with a pluggable positional encoding.

    Args:
        preset: 'tiny' | 'small' | 'base' | 'large' (ADAPTER_SETTINGS); every
            value can be overridden by the arguments below.
        interaction_indexes: [first, last] ViT block of each interaction.
        deform_num_heads: Heads of the deformable attentions.
        deform_ratio: Value-projection ratio of the deformable attentions.
        n_points: Sampling points per head and level.
        conv_inplane: Width of the spatial prior module's stem.
        init_values: Initial injector gamma (0: ViT unchanged at the start).
        with_cffn: ConvFFN in the extractors.
        cffn_ratio: ConvFFN hidden width / embed_dim.
        use_extra_extractor: Two more extractors in the last interaction.
        vit_feature_mode: How ViT tokens are added to the pyramid: 'last' (the
            final tokens at every level, as the original detection code),
            'per_stage' (interaction i's tokens at level i, as the original
            segmentation code) or None (not added).
        vit_final_norm: Pass the ViT tokens through the final LayerNorm and the
            PE's final site (MPVG's last-norm term) before adding them to the
            pyramid. The original uses no final norm (False).
        norm_cfg: Norm of the spatial prior module and the output norms
            (BN, SyncBN, GN, ...).
        with_cp: Gradient checkpointing in the ViT blocks and the adapter.
        freeze_vit: Freeze the ViT (patch embedding, prefix tokens, PE, blocks,
            final norm): no gradients, so no optimizer slots (the layer-decay
            constructor skips them), and kept in eval mode (no dropout, drop
            path or PE train-time augmentation). With injectors the blocks
            still pass gradients to them; without, the ViT runs without autograd.
        inject: Build the injectors. False: extractor-only interactions
            (DINOv3's ``DINOv3_Adapter`` with ``freeze_vit=True``,
            ``vit_feature_mode='per_stage'`` and ``vit_final_norm=True``); the
            extractors then read the ViT tokens after the final norm too.
        vit_autocast: 'bfloat16' or 'float16': run the frozen ViT under
            autocast to that dtype (DINOv3: bfloat16), its tokens cast back to
            the adapter's dtype; needs ``freeze_vit=True, inject=False``.
        **kwargs: ViT arguments (see :class:`PEViT`). ``class_token`` and
            ``num_register_tokens`` default to off, also for a foundation arch
            (as the original's DINOv2 configs); when on, the prefix tokens run
            through the ViT blocks (globally, also in windowed blocks) and the
            injectors, extractors and pyramid use the patch tokens only, as
            DINOv3's ``InteractionBlockWithCls``. Others: pos_embed, init_cfg,
            pretrained, patch_size,
            pretrain_size, window_size, window_block_indexes, drop_path_rate,
            embed_dim, depth, layer_scale_init_value (default 1.0, as the
            original; None removes layer scale), ...
    """

    def __init__(self,
                 preset: str = 'tiny',
                 interaction_indexes: Optional[Sequence[Sequence[int]]] = None,
                 deform_num_heads: Optional[int] = None,
                 deform_ratio: Optional[float] = None,
                 n_points: int = 4,
                 conv_inplane: int = 64,
                 init_values: float = 0.,
                 with_cffn: bool = True,
                 cffn_ratio: float = 0.25,
                 use_extra_extractor: bool = True,
                 vit_feature_mode: Optional[str] = 'last',
                 vit_final_norm: bool = False,
                 norm_cfg: Optional[dict] = None,
                 with_cp: bool = False,
                 freeze_vit: bool = False,
                 inject: bool = True,
                 vit_autocast: Optional[str] = None,
                 **kwargs) -> None:
        if not isinstance(preset, str) or preset not in ADAPTER_SETTINGS:
            raise ValueError(f'unknown preset {preset!r}; valid: {sorted(ADAPTER_SETTINGS)}')
        with_cffn, use_extra_extractor, vit_final_norm, freeze_vit, inject = (
            check_bool('ViTAdapter', name, value) for name, value in (
                ('with_cffn', with_cffn), ('use_extra_extractor', use_extra_extractor),
                ('vit_final_norm', vit_final_norm), ('freeze_vit', freeze_vit),
                ('inject', inject)))
        if not inject and init_values:
            raise ValueError(f'init_values={init_values} is the injectors\' gamma, but '
                             'inject=False builds no injectors')
        if vit_autocast not in (None, 'bfloat16', 'float16'):
            raise ValueError(f"vit_autocast={vit_autocast!r}; valid: None, 'bfloat16', "
                             "'float16'")
        if vit_autocast and (inject or not freeze_vit):
            raise ValueError('vit_autocast runs a frozen ViT without autograd: it needs '
                             f'freeze_vit=True and inject=False (got freeze_vit={freeze_vit}, '
                             f'inject={inject})')
        if vit_feature_mode not in VIT_FEATURE_MODES:
            raise ValueError(f'vit_feature_mode={vit_feature_mode!r}; valid: {VIT_FEATURE_MODES}')
        prefix_tokens_off_by_default(kwargs)
        settings = dict(ADAPTER_SETTINGS[preset])
        kwargs.setdefault('arch', settings.pop('arch'))
        kwargs.setdefault('drop_path_rate', settings.pop('drop_path_rate'))
        # the original's layer scale, unless the arch has its own (DINOv2/v3: 1e-5)
        kwargs.setdefault('layer_scale_init_value', resolve_arch(
            kwargs['arch'], {}).get('layer_scale_init_value') or 1.0)
        if 'final_norm' in kwargs:
            raise TypeError('ViTAdapter takes vit_final_norm (the ViT tokens\' norm before '
                            'the pyramid), not final_norm')
        super().__init__(with_cp=with_cp, final_norm=vit_final_norm, **kwargs)
        self.interaction_indexes = self._check_interactions(
            settings['interaction_indexes'] if interaction_indexes is None
            else interaction_indexes)
        if vit_feature_mode == 'per_stage' and len(self.interaction_indexes) != 4:
            raise ValueError(
                f"vit_feature_mode='per_stage' adds interaction i's tokens to pyramid level i: "
                f'it needs 4 interactions, got {len(self.interaction_indexes)} '
                f'(interaction_indexes={self.interaction_indexes}); use vit_feature_mode='
                "'last' or None, or give 4 interactions")
        self.vit_feature_mode = vit_feature_mode
        dim = self.embed_dim
        norm_cfg = check_norm_cfg('ViTAdapter', 'norm_cfg', norm_cfg) or dict(type='BN')
        deform_num_heads, deform_ratio = self._check_deformable(
            settings['deform_num_heads'] if deform_num_heads is None else deform_num_heads,
            settings['deform_ratio'] if deform_ratio is None else deform_ratio, n_points)
        check_int('ViTAdapter', 'conv_inplane', conv_inplane)
        check_real('ViTAdapter', 'init_values', init_values)
        if with_cffn and int(dim * check_positive('ViTAdapter', 'cffn_ratio', cffn_ratio)) < 1:
            raise ValueError(f'ViTAdapter: cffn_ratio={cffn_ratio} gives a zero-width ConvFFN '
                             f'at embed_dim={dim}')

        self.level_embed = nn.Parameter(torch.zeros(3, dim))
        self.spm = SpatialPriorModule(conv_inplane, dim, in_channels=self.in_channels,
                                      norm_cfg=norm_cfg)
        last = len(self.interaction_indexes) - 1
        self.interactions = nn.ModuleList([
            InteractionBlock(
                dim, deform_num_heads, n_points, n_levels=3, deform_ratio=deform_ratio,
                init_values=init_values, with_cffn=with_cffn, cffn_ratio=cffn_ratio, drop=0.,
                drop_path=kwargs['drop_path_rate'],
                extra_extractors=2 if use_extra_extractor and i == last else 0, with_cp=with_cp,
                inject=inject)
            for i in range(len(self.interaction_indexes))])
        self.up = nn.ConvTranspose2d(dim, dim, 2, 2)
        # output norms, named as in the original (norm1..norm4 for strides 4..32)
        self.norm1, self.norm2, self.norm3, self.norm4 = (
            build_norm_layer(norm_cfg, dim)[1] for _ in range(4))
        self._init_adapter_weights()
        self.freeze_vit, self.inject, self.vit_autocast = freeze_vit, inject, vit_autocast
        if freeze_vit:
            for module in self._vit_parts():
                module.requires_grad_(False)
            for token in (self.cls_token, self.reg_token):
                if token is not None:
                    token.requires_grad_(False)

    def _vit_parts(self) -> list:
        return [m for m in (self.patch_embed, self.pos_drop, self.pe, self.blocks, self.norm)
                if m is not None]

    def _vit_context(self, device_type: str) -> ExitStack:
        """No autograd (and the autocast asked for) for a frozen ViT without
        injectors; nothing otherwise (injectors need gradients through it)."""
        stack = ExitStack()
        if self.freeze_vit and not self.inject:
            stack.enter_context(torch.no_grad())
            if self.vit_autocast:
                stack.enter_context(torch.autocast(device_type,
                                                   dtype=getattr(torch, self.vit_autocast)))
        return stack

    def train(self, mode: bool = True) -> 'ViTAdapter':
        super().train(mode)
        if self.freeze_vit:
            for module in self._vit_parts():
                module.eval()
        return self

    def _check_interactions(self, indexes) -> list:
        if isinstance(indexes, (str, bytes)) or not isinstance(indexes, Sequence) or any(
                isinstance(ix, (str, bytes)) or not isinstance(ix, Sequence) or len(ix) != 2
                for ix in indexes):
            raise TypeError(f'ViTAdapter: interaction_indexes={indexes!r} must be a list of '
                            '[first, last] block pairs, e.g. [[0, 2], [3, 5], [6, 8], [9, 11]]')
        indexes = [check_int_list('ViTAdapter', f'interaction_indexes[{i}]', ix)
                   for i, ix in enumerate(indexes)]
        flat = [b for ix in indexes for b in range(ix[0], ix[-1] + 1)]
        if flat != list(range(self.depth)):
            raise ValueError(f'interaction_indexes {indexes} must cover blocks '
                             f'0..{self.depth - 1} in order, each once')
        return indexes

    def _check_deformable(self, num_heads, ratio, n_points) -> Tuple[int, float]:
        num_heads = check_int('ViTAdapter', 'deform_num_heads', num_heads)
        check_int('ViTAdapter', 'n_points', n_points)
        width = int(self.embed_dim * check_positive('ViTAdapter', 'deform_ratio', ratio))
        if self.embed_dim % num_heads or width < num_heads or width % num_heads:
            raise ValueError(f'ViTAdapter: deform_num_heads={num_heads} with deform_ratio='
                             f'{ratio} at embed_dim={self.embed_dim}: both embed_dim and the '
                             f'value width int(embed_dim * deform_ratio) = {width} must be '
                             'positive multiples of deform_num_heads')
        return num_heads, ratio

    def _init_adapter_weights(self) -> None:
        """The original's init of the adapter parts (the ViT keeps its own)."""
        for module in [self.spm, self.interactions, self.up]:
            for m in module.modules():
                if isinstance(m, nn.Linear):
                    trunc_normal_(m.weight, std=0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                    m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
                    if m.bias is not None:
                        m.bias.data.zero_()
        for m in self.interactions.modules():
            if isinstance(m, DeformableAttention):  # Deformable-DETR init, over the above
                m.init_weights()
        nn.init.normal_(self.level_embed)

    def no_weight_decay(self) -> set:
        return super().no_weight_decay() | {'level_embed'}

    def forward(self, img: Tensor) -> Tuple[Tensor, ...]:
        image_size = tuple(img.shape[-2:])
        img = pad_to_multiple(img, OUT_STRIDES[-1])

        c1, c2, c3, c4 = self.spm(img)
        levels = [tuple(t.shape[-2:]) for t in (c2, c3, c4)]
        c = torch.cat([t.flatten(2).transpose(1, 2) + self.level_embed[i]
                       for i, t in enumerate((c2, c3, c4))], dim=1)

        with self._vit_context(img.device.type):
            x, state = self.embed(img)
        # the ViT pads to whole patches: with a patch size that does not divide 32
        # (DINOv2, EVA-02: 14) its grid spans a few pixels more than the pyramid's
        vit_span = tuple(g * self.patch_size for g in state.grid)
        padded = tuple(img.shape[-2:])
        inject_inputs = DeformInputs([state.grid], levels, img.device, vit_span, padded)
        extract_inputs = DeformInputs(levels, [state.grid], img.device, padded, vit_span)
        # prefix tokens (class, registers) run through the ViT blocks only; the
        # injectors and extractors see the patch tokens (DINOv3's InteractionBlockWithCls)
        prefix = self.num_prefix_tokens
        vit_tokens = []
        for (first, last), interaction in zip(self.interaction_indexes, self.interactions):
            if self.inject:
                patches = interaction.inject(x[:, prefix:], c, inject_inputs)
                x = torch.cat([x[:, :prefix], patches], dim=1) if prefix else patches
            with self._vit_context(img.device.type):
                x = self.forward_blocks(x, state, first, last + 1)
                # without injectors nothing flows back into the ViT: the extractors read
                # it as the pyramid does, after the final norm (DINOv3_Adapter reads
                # get_intermediate_layers' normed tokens)
                read_out = x if self.inject else self.finalize(x, state)
            if self.vit_autocast:  # back to the adapter's dtype
                x, read_out = x.to(c.dtype), read_out.to(c.dtype)
            c = interaction.extract(c, read_out[:, prefix:], extract_inputs, levels)
            vit_tokens.append(read_out)

        sizes = [n[0] * n[1] for n in levels]
        c2, c3, c4 = (tokens_to_map(t, s) for t, s in zip(c.split(sizes, dim=1), levels))
        c1 = self.up(c2) + c1
        pyramid = [c1, c2, c3, c4]
        if self.vit_feature_mode is not None:
            read_outs = vit_tokens[-1:] if self.vit_feature_mode == 'last' else vit_tokens
            vit_maps = [tokens_to_map((self.finalize(t, state) if self.inject else t)[:, prefix:],
                                      state.grid) for t in read_outs]
            if self.vit_feature_mode == 'last':
                vit_maps = vit_maps * 4
            pyramid = [feat + resample_to_level(vit_map, self.patch_size, stride, feat.shape)
                       for feat, vit_map, stride in zip(pyramid, vit_maps, OUT_STRIDES)]
        return normed_outputs(pyramid, (self.norm1, self.norm2, self.norm3, self.norm4),
                              image_size)
