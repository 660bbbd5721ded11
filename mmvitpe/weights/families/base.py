"""What a checkpoint family is (see ``__init__.py``)."""
import re
from typing import Dict, Iterable, Tuple

import torch
from torch import Tensor

from ..reader import IncompatibleCheckpointError


class Family:
    """A layout of released checkpoints and its translation.

    Attributes:
        name: Short name, as the load report says it.
        sources: Where such checkpoints come from, for the docs' list.
        model_types: ``config.json`` ``model_type`` values of the hub layouts.
    """
    name: str = ''
    sources: str = ''
    model_types: Tuple[str, ...] = ()

    def recognises(self, state: Dict[str, Tensor]) -> bool:
        raise NotImplementedError

    def convert(self, state: Dict[str, Tensor], targets: Dict[str, Tensor]
                ) -> Tuple[Dict[str, Tensor], Dict[str, str]]:
        """(the translated state, source keys dropped with why). ``targets`` is the
        model's state dict, for conversions that depend on what it has."""
        raise NotImplementedError

    def check_config(self, config: dict, model) -> None:
        """Compare a hub ``config.json`` with the target model; raise naming both
        values where they disagree."""


def check_same(what: str, theirs, ours, ours_name: str) -> None:
    """A config.json value that must equal the target model's."""
    if theirs is not None and theirs != ours:
        raise IncompatibleCheckpointError(f'config.json {what}={theirs!r} but the model has '
                                          f'{ours_name}={ours!r}; build the model with the '
                                          "checkpoint's value")


def check_shapes(state: Dict[str, Tensor], keys: Iterable[str], rule: str,
                 fits=lambda shapes: len(set(shapes)) == 1) -> None:
    """Source tensors merged into one must fit each other: an error naming them all
    and their shapes, before torch fails inside the merge."""
    keys = list(keys)
    shapes = [tuple(state[k].shape) for k in keys]
    if not fits(shapes):
        named = ', '.join(f'{k} {s}' for k, s in zip(keys, shapes))
        raise IncompatibleCheckpointError(f'{named}: {rule}')


def qkv_bias_without_k(q_bias: Tensor, v_bias: Tensor) -> Tensor:
    return torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])


def merge_qkv(state: Dict[str, Tensor], names: Dict[str, str], out: str) -> None:
    """Separate q, k, v projections (``names``: 'q'/'k'/'v' -> source prefix, each with
    ``.weight`` and maybe ``.bias``) -> ``out.weight`` / ``out.bias`` (a k without a
    bias gets zeros, as BEiT's and EVA's)."""
    weights = [f'{names[p]}.weight' for p in 'qkv']
    check_shapes(state, weights, 'q, k and v projections have one shape')
    state[f'{out}.weight'] = torch.cat([state.pop(k) for k in weights])
    biases = {p: f'{names[p]}.bias' for p in 'qkv' if f'{names[p]}.bias' in state}
    if not biases:
        return
    check_shapes(state, biases.values(), 'q, k and v biases have one shape')
    like = state[next(iter(biases.values()))]
    state[f'{out}.bias'] = torch.cat([state.pop(biases[p]) if p in biases
                                      else torch.zeros_like(like) for p in 'qkv'])


def rename(state: Dict[str, Tensor], rules: Iterable[Tuple[str, str]]) -> Dict[str, Tensor]:
    """Keys renamed by the first matching (regex, replacement); others unchanged."""
    rules = [(re.compile(p), r) for p, r in rules]
    out = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            if pattern.match(key):
                key = pattern.sub(replacement, key)
                break
        if key in out:
            raise IncompatibleCheckpointError(f'two source keys become {key!r}; keep one of them')
        out[key] = value
    return out


# Official DINOv2 / DINOv3 / EVA-02 MLP names -> timm's (block.MLP_LAYERS), as timm's
# checkpoint filters rename them
_OFFICIAL_MLP = re.compile(r'^(blocks\.\d+\.mlp\.)(w12|w1|w2|w3|ffn_ln)\.(weight|bias)$')
_MLP_NAMES = dict(w12='fc1', w1='fc1_g', w2='fc1_x', w3='fc2', ffn_ln='norm')


def rename_official_mlp(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    def timm_name(key):
        m = _OFFICIAL_MLP.match(key)
        return f'{m.group(1)}{_MLP_NAMES[m.group(2)]}.{m.group(3)}' if m else key
    return {timm_name(k): v for k, v in state.items()}


PRETRAINING_ONLY = 'DINOv2 / DINOv3 pretraining only (masked-token, local-crop norm, projectors)'
