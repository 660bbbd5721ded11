"""transformers' Dinov2Model and Dinov2WithRegistersModel (the hub's facebook/dinov2-*),
with or without a task model's prefix: into the official DINOv2 layout."""
import torch

from .base import Family, check_same
from .hf_common import check_vit_config, strip_prefix, translate
from . import register_family

_RULES = (
    (r'^embeddings\.register_tokens$', 'register_tokens'),
    (r'^(blocks\.\d+\.)layer_scale([12])\.lambda1$', r'\1ls\2.gamma'),
    (r'^(blocks\.\d+\.)mlp\.weights_in\.', r'\1mlp.w12.'),     # packed SwiGLU (giant)
    (r'^(blocks\.\d+\.)mlp\.(weights_out|down_proj)\.', r'\1mlp.w3.'),
    (r'^layernorm\.', 'norm.'),
)


@register_family
class HFDINOv2(Family):
    name = 'transformers-dinov2'
    sources = ('transformers `Dinov2Model` / `Dinov2WithRegistersModel` (hub `facebook/dinov2-*`, '
               '`*-with-registers`), task prefixes `dinov2.` / `dinov2_with_registers.`')
    model_types = ('dinov2', 'dinov2_with_registers')

    def recognises(self, state):
        return any(k.endswith('layer_scale1.lambda1') and 'encoder.layer.' in k for k in state)

    def convert(self, state, targets):
        state, dropped = strip_prefix(state, 'embeddings.patch_embeddings.projection.weight')
        state = translate(state, 'encoder.layer', _RULES)
        for block in sorted({k.split('.mlp.')[0] for k in state if '.mlp.gate_proj.' in k}):
            for part in ('weight', 'bias'):  # transformers 5's split SwiGLU, packed again
                gate, up = (state.pop(f'{block}.mlp.{p}_proj.{part}', None) for p in ('gate', 'up'))
                if gate is not None and up is not None:
                    state[f'{block}.mlp.w12.{part}'] = torch.cat([gate, up])
        return state, dropped

    def check_config(self, config, model):
        check_vit_config(config, model)
        check_same('num_register_tokens', config.get('num_register_tokens', 0),
                   model.num_register_tokens, 'num_register_tokens')
