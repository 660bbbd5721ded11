"""detectron2's ViTDet backbone (``ViT`` + ``SimpleFeaturePyramid``): the ViT under
``net.``, the pyramid's convs with their norm inside (``simfp_<k>.<i>.norm``)."""
import re

from . import register_family
from .base import Family

_PYRAMID_CONV = re.compile(r'^(simfp_\d\.\d+)\.(weight|bias|norm\.weight|norm\.bias)$')


@register_family
class ViTDet(Family):
    name = 'vitdet'
    sources = ('detectron2 ViTDet (`model_final_*.pkl` converted to a state dict, or the '
               'backbone of a detectron2 `.pth`): `net.` dropped, the pyramid\'s '
               '`Conv2d(norm=...)` to mmcv ConvModule names (`conv.`, `ln.`), '
               '`attn.rel_pos_h/w` to RelPosDecomposed')

    def recognises(self, state):
        return any(k.startswith('net.blocks.') for k in state) and \
            any(k.startswith('simfp_') for k in state)

    def convert(self, state, targets):
        out = {}
        for key, value in state.items():
            key = key[len('net.'):] if key.startswith('net.') else key
            m = _PYRAMID_CONV.match(key)
            if m and f'{m.group(1)}.conv.weight' in targets:  # a ConvModule here
                module, name = m.groups()
                key = f'{module}.{"ln." + name[5:] if name.startswith("norm.") else "conv." + name}'
            out[key] = value
        return out, {}
