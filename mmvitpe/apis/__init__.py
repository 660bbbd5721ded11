from .backbone import backbone_from_config
from .launch import (add_common_args, close_distributed, init_cpu_distributed, parse_common_args,
                     prepare_config, task_of)

__all__ = ['add_common_args', 'backbone_from_config', 'close_distributed',
           'init_cpu_distributed', 'parse_common_args', 'prepare_config', 'task_of']
