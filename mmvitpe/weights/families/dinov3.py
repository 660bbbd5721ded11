"""DINOv3 as facebookresearch/dinov3 saves it."""
import re

from .base import PRETRAINING_ONLY, Family, check_shapes, rename_official_mlp
from . import register_family

DINOV3_MARKERS = re.compile(r'^(storage_tokens$|rope_embed\.|local_cls_norm\.|projectors\.|'
                            r'blocks\.\d+\.attn\.qkv\.bias_mask$)')
_PRETRAINING = re.compile(r'^(mask_token$|local_cls_norm\.|projectors\.)')


@register_family
class DINOv3(Family):
    name = 'dinov3'
    sources = ('DINOv3 official (`dinov3_vit*16_pretrain_*.pth`): `storage_tokens`, the k bias '
               'masked by `bias_mask`, an all-zero qkv bias where the model has none, SwiGLU '
               '`w1`/`w2`/`w3`, `rope_embed.periods` (to RoPEDINOv3), pretraining-only parts '
               'dropped')

    def recognises(self, state):
        return any(DINOV3_MARKERS.match(k) for k in state)

    def convert(self, state, targets):
        state, dropped = dict(state), {}
        for mask in [k for k in state if k.endswith('.attn.qkv.bias_mask')]:
            # DINOv3 multiplies the bias by its mask (k part 0) in every forward; the k
            # bias matters under RoPE (it is rotated with k), so it is zeroed here
            bias = mask[:-len('_mask')]
            if bias in state:
                check_shapes(state, [bias, mask], 'a bias mask has the shape of its bias')
                state[bias] = state[bias] * state[mask].to(state[bias].dtype)
            state.pop(mask)
            dropped[mask] = "DINOv3's mask of the k bias, applied to attn.qkv.bias"
        if 'storage_tokens' in state:
            state['reg_token'] = state.pop('storage_tokens')
        for key in [k for k in state if _PRETRAINING.match(k)]:
            state.pop(key)
            dropped[key] = PRETRAINING_ONLY
        for key in [k for k in state if re.match(r'^blocks\.\d+\.attn\.qkv\.bias$', k)]:
            if key not in targets and not state[key].any():
                state.pop(key)
                dropped[key] = 'all-zero qkv bias (DINOv3 distilled models); this model has ' \
                               'qkv_bias=False'
        return rename_official_mlp(state), dropped
