from .cpu_ddp import CPUCompatibleDDP
from .eomt_annealing import EoMTMaskAnnealingHook
from .eomt_optim import EoMTOptimizerConstructor, TwoStageWarmupPolyLR
from .layer_decay import LayerDecayOptimizerConstructor
from .non_finite import NonFiniteCheckHook, NonFiniteError

__all__ = ['CPUCompatibleDDP', 'EoMTMaskAnnealingHook', 'EoMTOptimizerConstructor',
           'LayerDecayOptimizerConstructor', 'NonFiniteCheckHook', 'NonFiniteError',
           'TwoStageWarmupPolyLR']
