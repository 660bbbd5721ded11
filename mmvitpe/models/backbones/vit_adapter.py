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
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor, nn

from mmvitpe.registry import MODELS
from mmvitpe.utils.validation import (check_bool, check_int, check_int_list, check_positive,
                                      check_real)
from ..layers.adapter_modules import DeformInputs, InteractionBlock, SpatialPriorModule
from ..layers.deformable_attention import DeformableAttention
from ..vit import resolve_arch, tokens_to_map
from .dense import OUT_STRIDES, DenseViT, resample_to_level

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
class ViTAdapter(DenseViT):
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
        with_cp: Gradient checkpointing in the ViT blocks and the adapter.
        inject: Build the injectors. False: extractor-only interactions, as
            :class:`DINOv3Adapter` (which is this with ``freeze_vit=True``,
            ``vit_feature_mode='per_stage'`` and ``final_norm=True``); the
            extractors then read the ViT tokens after the final norm too.
        **kwargs: See :class:`DenseViT` (arch, pos_embed, norm_cfg — also the
            spatial prior module's —, final_norm, freeze_vit: with injectors the
            frozen blocks still pass gradients to them, vit_autocast: only
            without injectors) and :class:`PEViT`. With ``class_token`` /
            ``num_register_tokens`` the prefix tokens run through the ViT blocks
            (globally, also in windowed blocks) and the injectors, extractors
            and pyramid use the patch tokens only, as DINOv3's
            ``InteractionBlockWithCls``. Others: init_cfg, pretrained,
            patch_size, pretrain_size, window_size, window_block_indexes,
            drop_path_rate, embed_dim, depth, layer_scale_init_value (default
            1.0, as the original; None removes layer scale), ...
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
                 with_cp: bool = False,
                 inject: bool = True,
                 **kwargs) -> None:
        if not isinstance(preset, str) or preset not in ADAPTER_SETTINGS:
            raise ValueError(f'unknown preset {preset!r}; valid: {sorted(ADAPTER_SETTINGS)}')
        with_cffn, use_extra_extractor, inject = (
            check_bool('ViTAdapter', name, value) for name, value in (
                ('with_cffn', with_cffn), ('use_extra_extractor', use_extra_extractor),
                ('inject', inject)))
        if not inject and init_values:
            raise ValueError(f'init_values={init_values} is the injectors\' gamma, but '
                             'inject=False builds no injectors')
        if kwargs.get('vit_autocast') and inject:
            raise ValueError(f"vit_autocast={kwargs['vit_autocast']!r} runs a frozen ViT "
                             'without autograd: the injectors need gradients through it '
                             '(inject=False, or DINOv3Adapter)')
        if vit_feature_mode not in VIT_FEATURE_MODES:
            raise ValueError(f'vit_feature_mode={vit_feature_mode!r}; valid: {VIT_FEATURE_MODES}')
        settings = dict(ADAPTER_SETTINGS[preset])
        kwargs.setdefault('arch', settings.pop('arch'))
        kwargs.setdefault('drop_path_rate', settings.pop('drop_path_rate'))
        # the original's layer scale, unless the arch has its own (DINOv2/v3: 1e-5)
        kwargs.setdefault('layer_scale_init_value', resolve_arch(
            kwargs['arch'], {}).get('layer_scale_init_value') or 1.0)
        super().__init__(with_cp=with_cp, **kwargs)
        self.inject = inject
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
                                      norm_cfg=self.norm_cfg)
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
        self._init_adapter_weights()

    @property
    def feeds_back_into_trunk(self) -> bool:
        return self.inject

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

    def pyramid(self, img: Tensor) -> List[Tensor]:
        c1, c2, c3, c4 = self.spm(img)
        levels = [tuple(t.shape[-2:]) for t in (c2, c3, c4)]
        c = torch.cat([t.flatten(2).transpose(1, 2) + self.level_embed[i]
                       for i, t in enumerate((c2, c3, c4))], dim=1)

        with self.trunk_grad(), self.trunk_autocast(img.device.type):
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
            with self.trunk_grad(), self.trunk_autocast(img.device.type):
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
        return pyramid
