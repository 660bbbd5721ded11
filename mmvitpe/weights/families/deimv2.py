"""DEIMv2's DINOv3 + STA backbone (``DINOv3STAs``): the ViT under ``dinov3.`` (then
the official DINOv3 layout), the stem under ``sta.``, the three levels' 1x1 convs and
norms as ``convs.k`` / ``norms.k`` for strides 8, 16, 32 (the STA's output norms
``norm2..norm4``)."""
import re

from . import register_family
from .base import Family

_LEVEL_NORM = re.compile(r'^norms\.(\d)\.(.+)$')


@register_family
class DEIMv2STA(Family):
    name = 'deimv2_sta'
    sources = ('DEIMv2 (`deimv2_dinov3_*_coco.pth`, its backbone): `dinov3.` dropped (then '
               'the official DINOv3 layout), `norms.k` to the STA\'s `norm<k+2>` (its '
               'stride-4 level, `stride4_conv` / `norm1`, starts new)')

    def recognises(self, state):
        return any(k.startswith('dinov3.') for k in state) and \
            any(k.startswith('sta.') for k in state)

    def convert(self, state, targets):
        out = {}
        for key, value in state.items():
            m = _LEVEL_NORM.match(key)
            if key.startswith('dinov3.'):
                key = key[len('dinov3.'):]
            elif m:
                key = f'norm{int(m.group(1)) + 2}.{m.group(2)}'
            out[key] = value
        return out, {}
