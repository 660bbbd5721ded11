from .cpu_ddp import CPUCompatibleDDP
from .layer_decay import LayerDecayOptimizerConstructor

__all__ = ['CPUCompatibleDDP', 'LayerDecayOptimizerConstructor']
