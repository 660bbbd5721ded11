"""One converter per source family of checkpoints.

As timm's ``checkpoint_filter_fn`` dispatches to one ``_convert_<family>`` each, a
family here is one module: it recognises its checkpoints by their keys (a hub
directory's ``config.json`` ``model_type`` names it outright) and translates them
into the layout the ViT core reads (timm's names) or into a layout a family after it
finishes. The ViT core, the spatial prior module and each PE scheme keep only their
own names (``mmvitpe/weights/ownership.py``).

Families run in registry order, each on the checkpoints it recognises: EoMT's
wrapper first, then the transformers layouts (into the official ones), then the
detector backbones that wrap a ViT (DEIMv2's STA, detectron2's ViTDet), then the official DINOv2,
DINOv3, EVA-02, BEiT and SP-ViT conversions. Adding a family is its module plus a
:func:`register_family` line; ``docs/weights.md`` lists what each reads.
"""
from typing import Dict, List, Optional, Tuple

from torch import Tensor

from ..reader import CheckpointError
from .base import Family

FAMILIES: Dict[str, Family] = {}


def register_family(family: type) -> type:
    """Class decorator: add a :class:`Family` to the registry, after those before it."""
    if family.name in FAMILIES:
        raise ValueError(f'a checkpoint family named {family.name!r} is registered already')
    FAMILIES[family.name] = family()
    return family


def families_of_model_type(model_type: str) -> List[Family]:
    return [f for f in FAMILIES.values() if model_type in f.model_types]


def convert_families(state: Dict[str, Tensor], targets: Dict[str, Tensor],
                     config: Optional[dict] = None
                     ) -> Tuple[Dict[str, Tensor], List[str], Dict[str, str], Dict[str, str]]:
    """Run every family that recognises ``state``: (new state, the families' names,
    source keys they dropped with why, and the source key of every new key that holds
    a source tensor as it was, so that the load report names what the file holds).

    With a hub ``config.json`` (``config``), its ``model_type`` must name a family
    and that family must recognise the keys.
    """
    if config is not None:
        model_type = config.get('model_type')
        named = families_of_model_type(model_type)
        if not named:
            supported = sorted({t for f in FAMILIES.values() for t in f.model_types})
            raise CheckpointError(f'config.json: model_type {model_type!r} is not a layout '
                                  f'mmvitpe reads; supported: {supported}')
        if not named[0].recognises(state):
            raise CheckpointError(f'config.json says model_type {model_type!r}, but the '
                                  f'weights are not in its layout ({named[0].name})')
    applied, dropped, origin = [], {}, {k: k for k in state}
    for family in FAMILIES.values():
        if family.recognises(state):
            source_of = {id(v): origin[k] for k, v in state.items()}
            state, gone = family.convert(state, targets)
            applied.append(family.name)
            dropped.update({origin.get(k, k): why for k, why in gone.items()})
            origin = {k: source_of.get(id(v), k) for k, v in state.items()}
    return state, applied, dropped, origin


# the registry's order: EoMT's wrapper first (its ViT is in timm's or transformers'
# layout); transformers layouts, into the official ones; then the detector backbones
# that wrap an official ViT layout (DEIMv2's, ViTDet's)
from . import eomt  # noqa: E402,F401
from . import hf_dinov2, hf_dinov3, hf_vit, hf_beit  # noqa: E402,F401
from . import deimv2, vitdet  # noqa: E402,F401
from . import dinov3, dinov2, eva, spvit  # noqa: E402,F401

__all__ = ['FAMILIES', 'Family', 'convert_families', 'register_family']
