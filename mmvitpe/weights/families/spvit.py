"""SP-ViT's separate q/k and v projections (its PE tensors are SPSA's own)."""
import re

import torch

from . import register_family
from .base import Family, check_shapes

_QK = re.compile(r'^(blocks\.\d+\.attn\.)qk\.weight$')


@register_family
class SPViT(Family):
    name = 'spvit'
    sources = 'SP-ViT official: `attn.qk` and `attn.v` merged into `attn.qkv`'

    def recognises(self, state):
        return any(_QK.match(k) for k in state)

    def convert(self, state, targets):
        state = dict(state)
        for key in [k for k in state if _QK.match(k)]:
            base = _QK.match(key).group(1)
            if f'{base}v.weight' not in state:
                continue
            check_shapes(state, [key, f'{base}v.weight'],
                         'qk holds twice the rows of v, over the same inputs',
                         fits=lambda s: len(s[0]) == len(s[1]) == 2
                         and s[0] == (2 * s[1][0], s[1][1]))
            state[f'{base}qkv.weight'] = torch.cat([state.pop(key), state.pop(f'{base}v.weight')])
            if f'{base}qk.bias' in state and f'{base}v.bias' in state:
                state[f'{base}qkv.bias'] = torch.cat([state.pop(f'{base}qk.bias'),
                                                      state.pop(f'{base}v.bias')])
        return state, {}
