from .cpu_ddp import CPUCompatibleDDP
from .layer_decay import LayerDecayOptimizerConstructor
from .non_finite import NonFiniteCheckHook, NonFiniteError

__all__ = ['CPUCompatibleDDP', 'LayerDecayOptimizerConstructor', 'NonFiniteCheckHook',
           'NonFiniteError']
