"""What a module knows about its own parameters in other codebases' checkpoints.

A module that owns parameters with foreign names (the ViT core, the adapter's
spatial prior module, each PE scheme) inherits :class:`ForeignWeights` and
answers for its own parameters only; :func:`mmvitpe.weights.transfer.remap`
walks the model, asks every owner, and never names a key itself. This is
timm's per-model ``checkpoint_filter_fn``, split per module so that a new
scheme or backbone part brings its foreign layout in its own file.

Source keys are relative to the model root (the ViT namespace of the source:
``pos_embed``, ``blocks.3.attn.w1.weight``, ``spm.stem.0.weight``); the keys an
owner returns are relative to the owner itself.
"""
from typing import Dict, NamedTuple, Optional

from torch import Tensor


class Claim(NamedTuple):
    """An owner's answer for one source tensor.

    Attributes:
        tensors: ``{key relative to the owner: tensor}`` to load (several
            entries when one source tensor feeds several parameters, e.g. a
            shared table copied to every block); empty when the tensor is
            recognised but has no place in this model.
        dropped: Why it has no place, when ``tensors`` is empty.
        invented: ``{key relative to the owner: the part of it no checkpoint value
            filled}``, e.g. a class slot that a table resized from a table without
            one keeps at its initialisation: such a tensor counts as missing.
    """
    tensors: Dict[str, Tensor]
    dropped: str = ''
    invented: Optional[Dict[str, str]] = None


class ForeignWeights:
    """Mixin of modules that translate foreign checkpoint keys of their own parameters.

    An owner that sets ``routes_inner_owners`` answers for the owners inside it
    (a composite PE routes each tensor to one of its member schemes); the walk
    then asks it alone.
    """
    routes_inner_owners: bool = False

    def merge_foreign(self, state: Dict[str, Tensor], prefix: str) -> Dict[str, Tensor]:
        """Whole-state conversions that need several source tensors at once
        (e.g. separate q/k and v projections into one qkv); returns the new state.

        ``prefix`` is this module's path in the model (``''`` or ``'spm.'``).
        """
        return state

    def claim_foreign(self, key: str, value: Tensor, prefix: str) -> Optional[Claim]:
        """Claim the source tensor ``key`` (relative to the model root), or None
        when it is none of this module's business."""
        return None

    def new_start_reason(self, name: str) -> Optional[str]:
        """Why own parameter ``name`` (relative to this module) may start at its
        initialisation when a checkpoint lacks it, or None when it must come from
        the checkpoint. The reason goes into the load report."""
        return (f'a {type(self).__name__} parameter, which ViT checkpoints do not hold; '
                'starts at its initialisation')
