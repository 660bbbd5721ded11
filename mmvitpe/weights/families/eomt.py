"""EoMT checkpoints (tue-mps/eomt, Lightning ``.ckpt`` or its ``state_dict``): the
network under ``network.``, the ViT under ``encoder.backbone.`` in timm's layout
(DINOv2) or in transformers' DINOv3 layout renamed to look like timm
(``embeddings`` as ``patch_embed``, ``layer`` as ``blocks``), which is restored
for the transformers family after it. The queries and heads (``q``,
``class_head``, ``mask_head``, ``upscale``) keep their names, which are EoMT's
here too. Its released DINOv3 files hold differences to DINOv3 (EoMT's
``delta_weights``), which no key tells apart: add DINOv3's tensors first."""
import re

from . import register_family
from .base import Family

_BACKBONE = 'encoder.backbone.'
_CONSTANTS = {'encoder.pixel_mean': 'ImageNet normalisation, done by the data preprocessor',
              'encoder.pixel_std': 'ImageNet normalisation, done by the data preprocessor',
              'attn_mask_probs': 'training state, set from the iteration by '
                                 'EoMTMaskAnnealingHook'}
# transformers' DINOv3 embeddings, and its encoder layers, as EoMT renamed them
_HF_EMBEDDINGS = re.compile(r'^patch_embed\.(cls_token|register_tokens|mask_token|'
                            r'patch_embeddings\..+)$')
_HF_LAYER = re.compile(r'^blocks\.(\d+\.(attention|layer_scale[12]|mlp|norm[12])\..+)$')


@register_family
class EoMTFamily(Family):
    name = 'eomt'
    sources = ('EoMT (tue-mps/eomt `.ckpt` / state dicts): `network.` and '
               '`encoder.backbone.` dropped, the DINOv3 backbone back to the transformers '
               'layout; `q`, `class_head`, `mask_head`, `upscale` as EoMT names them')

    def recognises(self, state):
        return any(k.startswith(_BACKBONE) or k.startswith('network.' + _BACKBONE)
                   for k in state) and any(k in ('q.weight', 'network.q.weight') for k in state)

    def convert(self, state, targets):
        out, dropped = {}, {}
        hf_layout = any(_HF_EMBEDDINGS.match(k[len(_BACKBONE):])
                        for k in (k.removeprefix('network.') for k in state)
                        if k.startswith(_BACKBONE))
        for key, value in state.items():
            if key.startswith('criterion.'):  # EoMT's own loading drops them too
                dropped[key] = "the loss's class weights, set by MaskClassificationLoss"
                continue
            key = key.removeprefix('network.')
            if key in _CONSTANTS:
                dropped[key] = _CONSTANTS[key]
                continue
            if key.startswith(_BACKBONE):
                key = key[len(_BACKBONE):]
                if hf_layout:
                    key = _HF_EMBEDDINGS.sub(r'embeddings.\1', key)
                    key = _HF_LAYER.sub(r'layer.\1', key)
            out[key] = value
        return out, dropped
