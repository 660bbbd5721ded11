"""timm's Eva layout (BEiT, EVA-02 and DINOv3 in timm) and the official EVA-02 / BEiT."""
import re

from .base import Family, check_shapes, merge_qkv, qkv_bias_without_k, rename_official_mlp
from .dinov3 import DINOV3_MARKERS
from . import register_family

_SPLIT = re.compile(r'^(blocks\.\d+\.attn\.)q_proj\.weight$')
_Q_BIAS = re.compile(r'^(blocks\.\d+\.attn\.)q_bias$')
_GAMMA = re.compile(r'^blocks\.(\d+)\.gamma_?([12])$')
_OFFICIAL_EVA_MLP = re.compile(r'^blocks\.\d+\.mlp\.(ffn_ln|w[123])\.')


@register_family
class Eva(Family):
    name = 'eva'
    sources = ('timm Eva models (BEiT, EVA-02, DINOv3 in timm) and the official EVA-02 / BEiT: '
               'separate `q_proj`/`k_proj`/`v_proj`, `q_bias`/`v_bias` (k has none), layer '
               'scales `gamma_1`/`gamma_2` (and the original ViT-Adapter\'s `gamma1`), '
               "EVA-02's SwiGLU `w1`/`w2`/`w3` with the sub-LN `ffn_ln`")

    def recognises(self, state):
        return any(_SPLIT.match(k) or _Q_BIAS.match(k) or _GAMMA.match(k)
                   or (_OFFICIAL_EVA_MLP.match(k) and not DINOV3_MARKERS.match(k))
                   for k in state) and not any(DINOV3_MARKERS.match(k) for k in state)

    def convert(self, state, targets):
        state = dict(state)
        for key in [k for k in state if _SPLIT.match(k)]:
            base = _SPLIT.match(key).group(1)
            if f'{base}k_proj.weight' in state and f'{base}v_proj.weight' in state:
                merge_qkv(state, {p: f'{base}{p}_proj' for p in 'qkv'}, f'{base}qkv')
        for key in [k for k in state if _Q_BIAS.match(k)]:
            base = _Q_BIAS.match(key).group(1)
            if f'{base}v_bias' in state:
                check_shapes(state, [key, f'{base}v_bias'], 'q and v biases have one shape')
                state[f'{base}qkv.bias'] = qkv_bias_without_k(state.pop(key),
                                                              state.pop(f'{base}v_bias'))
        state = {(f'blocks.{_GAMMA.match(k).group(1)}.ls{_GAMMA.match(k).group(2)}.gamma'
                  if _GAMMA.match(k) else k): v for k, v in state.items()}
        return rename_official_mlp(state), {}
