from .cpu_ddp import CPUCompatibleDDP
from .eomt_annealing import EoMTMaskAnnealingHook
from .layer_decay import LayerDecayOptimizerConstructor
from .non_finite import NonFiniteCheckHook, NonFiniteError

__all__ = ['CPUCompatibleDDP', 'EoMTMaskAnnealingHook', 'LayerDecayOptimizerConstructor',
           'NonFiniteCheckHook', 'NonFiniteError']
