"""Move released weights into a ViT of mmvitpe, across layouts and PE schemes.

:func:`remap` turns a source state dict (timm/DeiT, MAE, BEiT, the original
ViT-Adapter, LaPE, SP-ViT, CPVT/Twins, rope-vit, or mmvitpe itself) into this
model's keys. Generic ViT renames live here; everything positional is asked of
the model's PE scheme (``PositionalEncoding.convert_foreign``), so weights
trained with scheme A load into scheme B: shared tensors load, B's own
parameters keep their (neutral where the scheme has one) initialisation, and
A-only tensors are reported as dropped.

It serves every loading path: ``init_cfg=dict(type='Pretrained')`` (via
``PEViT.init_weights``), ``load_from`` and ``--resume`` (via a state-dict
pre-hook on the backbone), and ``tools/convert_weights.py``.
"""
import re
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

# Source keys that only classification models have.
CLASSIFIER_KEYS = re.compile(r'^(head|head_dist|fc_norm|pre_logits|dist_token)(\.|$)')
# Source keys that belong to some PE scheme (claimed by the model's scheme or dropped).
PE_KEYS = re.compile(r'(^pos_embed$|^freqs$|^rel_pos_bias\.|^pos_block\.|\.pe_norm\.|'
                     r'\.attn\.(w1\.|w2$|b2$)|relative_position_(bias_table|index)$)')
# Renames between the original ViT-Adapter (or BEiT layer scale) and mmvitpe.
_STEM_CONV = {'0': '0', '3': '1', '6': '2'}
_STEM_NORM = {'1': '0', '4': '1', '7': '2'}


@dataclass
class LoadReport:
    """What happened to every tensor of a load."""
    loaded: List[str] = field(default_factory=list)
    resized: Dict[str, str] = field(default_factory=dict)
    new: List[str] = field(default_factory=list)
    dropped: Dict[str, str] = field(default_factory=dict)
    unexpected: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unexpected and not self.missing

    def table(self) -> str:
        def keys(items, limit=6):
            items = list(items)
            text = ', '.join(items[:limit])
            return text + (f', ... (+{len(items) - limit})' if len(items) > limit else '')
        rows = [('loaded', len(self.loaded), keys(self.loaded)),
                ('resized', len(self.resized), keys(f'{k} ({v})' for k, v in self.resized.items())),
                ('newly initialised', len(self.new), keys(self.new)),
                ('dropped', len(self.dropped),
                 keys(f'{k} ({v})' for k, v in self.dropped.items())),
                ('unexpected', len(self.unexpected), keys(self.unexpected)),
                ('missing', len(self.missing), keys(self.missing))]
        width = max(len(r[0]) for r in rows)
        return '\n'.join(f'{name:<{width}} | {count:>5} | {text}' for name, count, text in rows)


def _rename(key: str, norm: str) -> str:
    """Generic ViT / original ViT-Adapter renames (no-ops on mmvitpe keys)."""
    key = re.sub(r'^blocks\.(\d+)\.gamma_?([12])$', r'blocks.\1.ls\2.gamma', key)
    m = re.match(r'^spm\.stem\.(\d)\.(weight|bias|running_mean|running_var|num_batches_tracked)$',
                 key)
    if m and m.group(1) in _STEM_CONV:
        return f'spm.stem.{_STEM_CONV[m.group(1)]}.conv.{m.group(2)}'
    if m and m.group(1) in _STEM_NORM:
        return f'spm.stem.{_STEM_NORM[m.group(1)]}.{norm}.{m.group(2)}'
    m = re.match(r'^spm\.conv([234])\.([01])\.(.+)$', key)
    if m:
        return f'spm.conv{m.group(1)}.{"conv" if m.group(2) == "0" else norm}.{m.group(3)}'
    return key


def _merge_split_qkv(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """SP-ViT's separate ``attn.qk`` and ``attn.v`` projections -> one ``attn.qkv``."""
    state = dict(state)
    for key in [k for k in state if k.endswith('.attn.qk.weight')]:
        base = key[:-len('qk.weight')]
        if base + 'v.weight' in state:
            state[base + 'qkv.weight'] = torch.cat([state.pop(key), state.pop(base + 'v.weight')])
            if base + 'qk.bias' in state and base + 'v.bias' in state:
                state[base + 'qkv.bias'] = torch.cat([state.pop(base + 'qk.bias'),
                                                      state.pop(base + 'v.bias')])
    return state


def remap(state: Dict[str, Tensor], model: nn.Module) -> Tuple[Dict[str, Tensor], LoadReport]:
    """Source tensors (keys relative to the ViT) -> ``model``'s keys, with a report.

    ``model`` is a :class:`~mmvitpe.models.PEViT` or a backbone built on it.
    """
    targets = model.state_dict()
    spm = getattr(model, 'spm', None)
    norm = spm.stem[0].norm_name if spm is not None else 'bn'
    report, out = LoadReport(), {}
    for key, value in _merge_split_qkv(state).items():
        if key in targets and key.startswith('pe.'):
            claimed = {key: value}  # mmvitpe's own PE keys
        elif PE_KEYS.search(key):
            claimed = model.pe.convert_foreign(key, value)
            if not claimed:
                report.dropped[key] = (f'PE tensor that {type(model.pe).__name__} '
                                       'does not use')
                continue
            claimed = {'pe.' + k: v for k, v in claimed.items()}
        elif key == 'cls_token' and model.cls_token is None:
            report.dropped[key] = 'this model has no class token'
            continue
        elif CLASSIFIER_KEYS.match(key) or (key.startswith('norm.') and model.norm is None):
            report.dropped[key] = 'classification head / final norm, unused here'
            continue
        else:
            claimed = {_rename(key, norm): value}
        for target, tensor in claimed.items():
            if target not in targets:
                report.unexpected.append(key)
                continue
            if tensor.shape != targets[target].shape:
                raise ValueError(f'{key} -> {target}: shape {tuple(tensor.shape)} does not fit '
                                 f'{tuple(targets[target].shape)}')
            if tensor.shape != value.shape:
                report.resized[target] = f'{tuple(value.shape)} -> {tuple(tensor.shape)}'
            else:
                report.loaded.append(target)
            out[target] = tensor
    vit_core = re.compile(r'^(patch_embed\.|blocks\.\d+\.(norm|attn\.(qkv|proj)|mlp)\.)')
    for key in targets:
        if key in out:
            continue
        core = vit_core.match(key) and not key.endswith('attn.qkv.bias')
        (report.missing if core else report.new).append(key)
    return out, report


def load_pretrained(model: nn.Module, state: Dict[str, Tensor], strict: bool = True
                    ) -> LoadReport:
    """Load source tensors into ``model`` through :func:`remap`.

    Args:
        strict: Fail on anything unexplained: source tensors with no place in
            the model, or ViT core weights the source lacks. Adapter parts,
            PE parameters of the model's own scheme and layer scales are
            expected to be new and never fail.

    Raises:
        KeyError: in strict mode, naming the unexplained keys.
    """
    mapped, report = remap(state, model)
    if strict and not report.ok:
        raise KeyError(f'strict load into {type(model).__name__} failed:\n'
                       f'unexpected (no place in the model): {report.unexpected}\n'
                       f'missing (ViT weights the checkpoint lacks): {report.missing}\n'
                       'pass strict=False in init_cfg to load anyway')
    model.load_state_dict(mapped, strict=False)
    return report
