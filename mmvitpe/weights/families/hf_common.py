"""What the transformers layouts share: a task model's prefix, the embeddings, the
encoder layers' attention, and the config.json values every ViT has."""
import math
import re
from typing import Dict, Tuple

from torch import Tensor

from .base import check_same, merge_qkv, rename

# The hub files keep the layout of transformers 4 (``attention.attention.query``,
# ``encoder.layer.<i>``), which transformers 5 renames when it loads them
# (``attention.q_proj``, ``layers.<i>``); a state dict of either is read.
_QKV = re.compile(r'^(blocks\.\d+\.)(?:attention\.attention\.(query|key|value)|'
                  r'attention\.([qkv])_proj)\.(weight|bias)$')
EMBEDDINGS = (
    (r'^embeddings\.cls_token$', 'cls_token'),
    (r'^embeddings\.mask_token$', 'mask_token'),
    (r'^embeddings\.position_embeddings$', 'pos_embed'),
    (r'^embeddings\.patch_embeddings\.projection\.', 'patch_embed.proj.'),
    (r'^embeddings\.patch_embeddings\.(weight|bias)$', r'patch_embed.proj.\1'),
)
ATTENTION_OUT = ((r'^(blocks\.\d+\.)attention\.(output\.dense|o_proj)\.', r'\1attn.proj.'),)


def strip_prefix(state: Dict[str, Tensor], marker: str) -> Tuple[Dict[str, Tensor],
                                                                   Dict[str, str]]:
    """A task model's keys without its prefix (``dinov2.``, ``vit.``): those around
    ``marker`` (a key every backbone of the family has); the task's head dropped."""
    found = next((k[:k.index(marker)] for k in state if marker in k), '')
    if not found:
        return state, {}
    inner = {k[len(found):]: v for k, v in state.items() if k.startswith(found)}
    head = {k: "the task model's head (classifier, decoder, pooler), unused here"
            for k in state if not k.startswith(found)}
    return inner, head


def merge_attention(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """q/k/v projections of every block (either spelling) -> ``attn.qkv``."""
    parts: Dict[str, Dict[str, str]] = {}
    out = {}
    for key, value in state.items():
        m = _QKV.match(key)
        if m:
            which = (m.group(2) or m.group(3))[0]  # query -> q
            name = f'{m.group(1)}attn.{which}'
            parts.setdefault(m.group(1), {})[which] = name
            out[f'{name}.{m.group(4)}'] = value
        else:
            out[key] = value
    for block, names in parts.items():
        if set(names) == set('qkv'):
            merge_qkv(out, names, f'{block}attn.qkv')
    return out


def translate(state: Dict[str, Tensor], layer: str, rules) -> Dict[str, Tensor]:
    """Encoder layers ``<layer>.<i>.`` -> ``blocks.<i>.``, then the family's rules."""
    state = rename(state, [(rf'^{layer}\.(\d+)\.', r'blocks.\1.')])
    return rename(merge_attention(state), list(EMBEDDINGS) + list(ATTENTION_OUT) + list(rules))


def check_vit_config(config: dict, model) -> None:
    """What every transformers ViT's config.json says of the model's shape."""
    patch = config.get('patch_size')
    check_same('hidden_size', config.get('hidden_size'), model.embed_dim, 'embed_dim')
    check_same('num_hidden_layers', config.get('num_hidden_layers'), model.depth, 'depth')
    check_same('num_attention_heads', config.get('num_attention_heads'), model.num_heads,
               'num_heads')
    check_same('patch_size', patch[0] if isinstance(patch, list) else patch, model.patch_size,
               'patch_size')
    eps, ours = config.get('layer_norm_eps'), model.blocks[0].norm1.eps
    if not (isinstance(eps, (int, float)) and math.isclose(eps, ours, rel_tol=1e-6)):
        check_same('layer_norm_eps', eps, ours, 'norm_eps')  # None: not given
