"""transformers' BeitModel (hub microsoft/beit-*), with or without a task model's
prefix: into timm's BEiT layout (q and v biases, gamma_1/2, relative tables)."""
from .base import Family
from .hf_common import check_vit_config, strip_prefix, translate
from .hf_vit import MASK_TOKEN, VIT_LAYER_RULES, drop, layer_key
from . import register_family

_RULES = VIT_LAYER_RULES + (
    (r'^(blocks\.\d+\.)lambda_([12])$', r'\1gamma_\2'),
    (r'^(blocks\.\d+\.)(?:attention\.attention\.)?relative_position_bias\.'
     r'relative_position_bias_table$', r'\1attn.relative_position_bias_table'),
    (r'^encoder\.relative_position_bias\.relative_position_bias_table$',
     'rel_pos_bias.relative_position_bias_table'),
    (r'^layernorm\.', 'norm.'),
)


@register_family
class HFBEiT(Family):
    name = 'transformers-beit'
    sources = 'transformers `BeitModel` (hub `microsoft/beit-*`), task prefix `beit.`'
    model_types = ('beit',)

    def recognises(self, state):
        keys = list(state)
        return any(k.endswith('layernorm_before.weight') for k in keys) and (
            any('lambda_1' in k or 'relative_position_bias' in k for k in keys)
            or not any(k.endswith(('attention.attention.key.bias', 'attention.k_proj.bias'))
                       for k in keys))

    def convert(self, state, targets):
        state, dropped = strip_prefix(state, 'embeddings.patch_embeddings.projection.weight')
        state = translate(state, layer_key(state), _RULES)
        drop(state, dropped, 'pooler.', 'the mean-pooling norm of a classification model '
                                        '(fc_norm), unused here')
        drop(state, dropped, 'mask_token', MASK_TOKEN)
        return state, dropped

    def check_config(self, config, model):
        check_vit_config(config, model)
