"""transformers' DINOv3ViTModel and DINOv3ViTBackbone (the hub's facebook/dinov3-vit*):
into the official DINOv3 layout."""
import torch

from .base import Family, check_same
from .hf_common import check_vit_config, strip_prefix, translate
from . import register_family

_RULES = (
    (r'^embeddings\.register_tokens$', 'storage_tokens'),
    (r'^(blocks\.\d+\.)layer_scale([12])\.lambda1$', r'\1ls\2.gamma'),
    (r'^(blocks\.\d+\.)mlp\.gate_proj\.', r'\1mlp.w1.'),   # SwiGLU: silu(w1 x) * w2 x
    (r'^(blocks\.\d+\.)mlp\.up_proj\.', r'\1mlp.UP.'),      # fc1 or w2: decided below
    (r'^(blocks\.\d+\.)mlp\.down_proj\.', r'\1mlp.DOWN.'),
)


@register_family
class HFDINOv3(Family):
    name = 'transformers-dinov3'
    sources = 'transformers `DINOv3ViTModel` / `DINOv3ViTBackbone` (hub `facebook/dinov3-vit*`)'
    model_types = ('dinov3_vit',)

    def recognises(self, state):
        return any(k.endswith('layer_scale1.lambda1') and k.split('.')[0] in ('layer', 'model')
                   for k in state) and any(k.startswith('embeddings.') for k in state)

    def convert(self, state, targets):
        state, dropped = strip_prefix(state, 'embeddings.patch_embeddings.weight')
        layer = 'model.layer' if any(k.startswith('model.layer.') for k in state) else 'layer'
        state = translate(state, layer, _RULES)
        gated = any('.mlp.w1.' in k for k in state)
        renamed = {}
        for key, value in state.items():  # plain MLP: fc1/fc2; gated: official w2/w3
            key = key.replace('.mlp.UP.', '.mlp.w2.' if gated else '.mlp.fc1.')
            renamed[key.replace('.mlp.DOWN.', '.mlp.w3.' if gated else '.mlp.fc2.')] = value
        return renamed, dropped

    def check_config(self, config, model):
        check_vit_config(config, model)
        check_same('num_register_tokens', config.get('num_register_tokens', 0),
                   model.num_register_tokens, 'num_register_tokens')
        mlp = type(model.blocks[0].mlp).__name__  # timm's Mlp (GELU) or SwiGLU (SiLU)
        check_same('hidden_act', config.get('hidden_act'),
                   'silu' if mlp.startswith('SwiGLU') else 'gelu', f'an {mlp} MLP, activation')
        theta, periods = config.get('rope_theta'), getattr(model.pe, 'periods', None)
        if theta is None or periods is None or len(periods) < 2:
            return  # another scheme than DINOv3's RoPE: nothing of it to compare
        # DINOv3's periods are base ** (4 i / head_dim); the model's base, read back
        base = float(periods[1]) ** (model.pe.head_dim / 4)
        expected = float(theta) ** (4 * torch.arange(len(periods)) / model.pe.head_dim)
        if not torch.allclose(periods.float().cpu(), expected, rtol=1e-4):
            check_same('rope_theta', theta, round(base, 4),
                       f'pos_embed ({type(model.pe).__name__}) base')
