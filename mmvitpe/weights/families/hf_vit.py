"""transformers' ViTModel (hub google/vit-*, the non-distilled facebook/deit-*) and
ViTMAEModel (facebook/vit-mae-*), with or without a task model's prefix: into timm's
layout."""
from .base import Family
from .hf_common import check_vit_config, strip_prefix, translate
from . import register_family

VIT_LAYER_RULES = (
    (r'^(blocks\.\d+\.)layernorm_before\.', r'\1norm1.'),
    (r'^(blocks\.\d+\.)layernorm_after\.', r'\1norm2.'),
    (r'^(blocks\.\d+\.)intermediate\.dense\.', r'\1mlp.fc1.'),
    (r'^(blocks\.\d+\.)output\.dense\.', r'\1mlp.fc2.'),
)
_RULES = VIT_LAYER_RULES + ((r'^layernorm\.', 'norm.'), (r'^pooler\.', 'pooler.'))
POOLER = 'the pooler of a classification model, unused here'
MASK_TOKEN = 'the masked-image-modeling token, unused here'


def layer_key(state) -> str:
    return 'layers' if any(k.startswith('layers.') for k in state) else 'encoder.layer'


def drop(state, dropped, pattern_start: str, reason: str) -> None:
    for key in [k for k in state if k.startswith(pattern_start)]:
        state.pop(key)
        dropped[key] = reason


@register_family
class HFViT(Family):
    name = 'transformers-vit'
    sources = ('transformers `ViTModel` (hub `google/vit-*`, non-distilled `facebook/deit-*`) '
               'and `ViTMAEModel` (`facebook/vit-mae-*`), task prefix `vit.`')
    model_types = ('vit', 'vit_mae')

    def recognises(self, state):
        keys = list(state)
        return (any(k.endswith('layernorm_before.weight') for k in keys)
                and not any('lambda_1' in k or 'relative_position_bias' in k for k in keys)
                and any(k.endswith(('attention.attention.key.bias', 'attention.k_proj.bias'))
                        for k in keys))

    def convert(self, state, targets):
        state, dropped = strip_prefix(state, 'embeddings.patch_embeddings.projection.weight')
        state = translate(state, layer_key(state), _RULES)
        drop(state, dropped, 'pooler.', POOLER)
        drop(state, dropped, 'mask_token', MASK_TOKEN)
        return state, dropped

    def check_config(self, config, model):
        check_vit_config(config, model)
