"""DINOv2 as facebookresearch/dinov2 (and torch.hub) saves it."""
import math
import re

from .base import PRETRAINING_ONLY, Family, rename_official_mlp
from .dinov3 import DINOV3_MARKERS
from . import register_family

_CHUNKED = re.compile(r'^blocks\.\d+\.(\d+)\.')


@register_family
class DINOv2(Family):
    name = 'dinov2'
    sources = ('DINOv2 official (`dinov2_vit*14[_reg4]_pretrain.pth`): chunked blocks, '
               'register tokens with the class slot folded into the class token, the '
               "giant's packed SwiGLU `w12`/`w3`, `mask_token` dropped")

    def recognises(self, state):
        if any(DINOV3_MARKERS.match(k) for k in state):
            return False
        return any(k in ('mask_token', 'register_tokens') or _CHUNKED.match(k)
                   or '.mlp.w12.' in k for k in state)

    def convert(self, state, targets):
        state = {_CHUNKED.sub(r'blocks.\1.', k): v for k, v in state.items()}
        if 'register_tokens' in state and 'cls_token' in state and 'pos_embed' in state:
            # timm's layout: the class token's table slot folded into the class token
            # (registers and class token then take no table entry)
            pos = state.pop('pos_embed')
            if math.isqrt(pos.shape[1] - 1) ** 2 == pos.shape[1] - 1:
                state['cls_token'] = state['cls_token'] + pos[:, :1]
                pos = pos[:, 1:]
            state['pos_embed'] = pos
        if 'register_tokens' in state:
            state['reg_token'] = state.pop('register_tokens')
        dropped = {'mask_token': PRETRAINING_ONLY} if state.pop('mask_token', None) is not None \
            else {}
        return rename_official_mlp(state), dropped
