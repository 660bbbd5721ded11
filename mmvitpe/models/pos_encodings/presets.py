"""Named composites: the PE combinations released backbones use, as one type.

``pos_embed=dict(type='RoPEMixedAPE')`` is the composite
``[dict(type='LearnedPE', class_slot=False), dict(type='RoPEMixed')]``, keys
and all (``pe.members.0.table.weight``, ``pe.members.1.freqs``); a member's
arguments are overridden under its type name (see :class:`Preset`).

=================  =================================================  ===================================
type               members                                            as in
=================  =================================================  ===================================
``BEiTPE``         LearnedPE + RelPosBias (per block, class entries)  BEiT with ``use_abs_pos_emb``
``RoPEAxialAPE``   LearnedPE (no class slot) + RoPEAxial (theta 100)  rope-vit ``rope_axial_ape``; timm ``vit_*_patch16_rope_ape_224``
``RoPEMixedAPE``   LearnedPE (no class slot) + RoPEMixed (theta 10)   rope-vit ``rope_mixed_ape``; timm ``vit_*_patch16_rope_mixed_ape_224``
``SPViTPE``        LearnedPE (no class slot) + SPSA (all blocks but   the released SP-ViT (``tlt/models/spvit.py``)
                   the last two) + PEG after every block
``EVA02PE``        LearnedPE (class slot) + RoPEEVA02 (positions      EVA-02; timm ``eva02_*``
                   rescaled to the pretraining grid)
``ViTDetPE``       LearnedPE (resized without antialias) +            detectron2's ViTDet (``use_abs_pos``,
                   RelPosDecomposed                                   ``use_rel_pos``); SAM's image encoder
=================  =================================================  ===================================

The RoPE presets resize their table as timm does (``antialias=True``), so timm's
models run unchanged at any grid. EVA-02's SwiGLU MLP and sub-LN are not PE and
belong to the backbone, not to this preset.

SP-ViT: the released models use SP-SA in the first ``local_up_to_layer`` blocks
(14 of 16 for SP-ViT-S, 22 of 24 for -L) and a PosCNN after every block, and
their class token joins only after the SP-SA blocks (so their table has no
class slot). Here a class token is present from the start and gets prior 1 in
the SP-SA blocks; its LV-ViT stem and residual scaling are not PE and not
reproduced.
"""
from typing import Dict

from mmvitpe.registry import POS_ENCODINGS
from .compose import Preset


@POS_ENCODINGS.register_module()
class BEiTPE(Preset):
    """Learned absolute table plus per-block relative position bias (BEiT), with
    BEiT's class-token bias entries when the model has a class token."""
    MEMBERS = ('LearnedPE', 'RelPosBias')

    @classmethod
    def defaults(cls, context: dict) -> Dict[str, dict]:
        has_class_token = context.get('num_prefix_tokens', 0) > context.get(
            'num_register_tokens', 0)
        return dict(RelPosBias=dict(class_entries=has_class_token))


@POS_ENCODINGS.register_module()
class RoPEAxialAPE(Preset):
    """Learned absolute table without a class slot plus axial RoPE (rope-vit)."""
    MEMBERS = ('LearnedPE', 'RoPEAxial')
    DEFAULTS = dict(LearnedPE=dict(class_slot=False, antialias=True), RoPEAxial=dict(theta=100.))


@POS_ENCODINGS.register_module()
class RoPEMixedAPE(Preset):
    """Learned absolute table without a class slot plus mixed RoPE (rope-vit)."""
    MEMBERS = ('LearnedPE', 'RoPEMixed')
    DEFAULTS = dict(LearnedPE=dict(class_slot=False, antialias=True), RoPEMixed=dict(theta=10.))


@POS_ENCODINGS.register_module()
class SPViTPE(Preset):
    """The released SP-ViT's PE: absolute table, SP-SA, a PEG after every block."""
    MEMBERS = ('LearnedPE', 'SPSA', 'PEG')

    @classmethod
    def defaults(cls, context: dict) -> Dict[str, dict]:
        depth = context['depth']
        return dict(LearnedPE=dict(class_slot=False),
                    SPSA=dict(blocks=list(range(max(depth - 2, 1)))),
                    PEG=dict(blocks=list(range(depth))))


@POS_ENCODINGS.register_module()
class EVA02PE(Preset):
    """EVA-02's PE: learned absolute table (class slot) plus its rescaled RoPE."""
    MEMBERS = ('LearnedPE', 'RoPEEVA02')
    DEFAULTS = dict(LearnedPE=dict(antialias=True))


@POS_ENCODINGS.register_module()
class ViTDetPE(Preset):
    """ViTDet's PE: a learned absolute table (resized bicubically without
    antialias, as detectron2's ``get_abs_pos``) plus decomposed relative position
    in every block. Its global blocks' tables are sized by
    ``RelPosDecomposed=dict(global_grid=...)`` (ViTDet: the input's grid, 64x64
    at 1024 px with patch 16)."""
    MEMBERS = ('LearnedPE', 'RelPosDecomposed')
    DEFAULTS = dict(LearnedPE=dict(antialias=False))
