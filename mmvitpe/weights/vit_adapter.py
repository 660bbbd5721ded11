"""Backbone weights of the original ViT-Adapter (czczup/ViT-Adapter, detection
and segmentation layouts) -> :class:`mmvitpe.models.ViTAdapter`.

Renames only, apart from the position table (class slot dropped by length,
grid resized if needed):

==============================  =========================================
original                        here
==============================  =========================================
pos_embed (cls slot + grid)     pe.table.weight (grid only)
blocks.i.gamma1 / gamma2        blocks.i.ls1.gamma / ls2.gamma
spm.stem.{0,3,6}.weight         spm.stem.{0,1,2}.conv.weight
spm.stem.{1,4,7}.*  (BN)        spm.stem.{0,1,2}.<norm>.*
spm.conv{2,3,4}.0.weight        spm.conv{2,3,4}.conv.weight
spm.conv{2,3,4}.1.*  (BN)       spm.conv{2,3,4}.<norm>.*
cls_token                       dropped (ViT-Adapter never uses it)
everything else                 same name
==============================  =========================================

``<norm>`` is the target's norm layer name (``bn`` for BN/SyncBN, ``gn``...).
"""
import re
from typing import Dict, List, Tuple

from torch import Tensor

from mmvitpe.models.backbones import ViTAdapter

_STEM = {'0': '0', '3': '1', '6': '2'}
_STEM_NORM = {'1': '0', '4': '1', '7': '2'}


def _rename(key: str, norm: str) -> str:
    key = re.sub(r'^blocks\.(\d+)\.gamma([12])$', r'blocks.\1.ls\2.gamma', key)
    m = re.match(r'^spm\.stem\.(\d)\.(.+)$', key)
    if m and m.group(1) in _STEM:
        return f'spm.stem.{_STEM[m.group(1)]}.conv.{m.group(2)}'
    if m and m.group(1) in _STEM_NORM:
        return f'spm.stem.{_STEM_NORM[m.group(1)]}.{norm}.{m.group(2)}'
    m = re.match(r'^spm\.conv([234])\.([01])\.(.+)$', key)
    if m:
        return f'spm.conv{m.group(1)}.{"conv" if m.group(2) == "0" else norm}.{m.group(3)}'
    return key


def convert_vit_adapter_backbone(state: Dict[str, Tensor], model: ViTAdapter
                                 ) -> Tuple[Dict[str, Tensor], List[str]]:
    """Convert an original ViT-Adapter backbone state dict for ``model``.

    Args:
        state: The original backbone's state dict (a ``backbone.`` prefix, as
            in whole mmdet/mmseg checkpoints, is stripped; other keys with a
            prefix are ignored as not belonging to the backbone).
        model: The target; its PE must hold an absolute table for
            ``pos_embed`` to land in (LearnedPE, LaPE, PVG, MPVG).

    Returns:
        The converted state dict and the list of source keys deliberately
        dropped (``cls_token``).

    Raises:
        KeyError: naming every source key that has no place in ``model``.
    """
    if any(k.startswith('backbone.') for k in state):
        state = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    norm = model.spm.stem[0].norm_name
    targets = model.state_dict()
    converted, dropped, unknown = {}, [], []
    for key, value in state.items():
        if key == 'cls_token':
            dropped.append(key)
        elif key == 'pos_embed' and hasattr(model.pe, 'table'):
            converted['pe.table.weight'] = model.pe.table.fit_checkpoint(value)
        elif _rename(key, norm) in targets:
            converted[_rename(key, norm)] = value
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f'{len(unknown)} ViT-Adapter keys have no place in the target '
                       f'{type(model.pe).__name__} model: {unknown}')
    return converted, dropped
