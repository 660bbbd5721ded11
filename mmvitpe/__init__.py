"""mmvitpe: ViT-Adapter backbones with pluggable positional encodings for
mmdet 3.x and mmsegmentation 1.x.

Importing the package registers its modules (``type='mmvitpe.<Name>'`` in any
config, whatever its default scope) and applies the checkpoint-loading policy
of :mod:`mmvitpe.utils.safe_load`.
"""
from .utils.safe_load import allow_mmengine_checkpoints

allow_mmengine_checkpoints()

from . import engine, models  # noqa: E402,F401  (registers the modules)
from .registry import MODELS, POS_ENCODINGS  # noqa: E402

__version__ = '0.1.0'
__all__ = ['MODELS', 'POS_ENCODINGS', '__version__']
