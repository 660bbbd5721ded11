from .backbone import backbone_from_config, backbone_without_init
from .checkpoints import (CheckpointFitHook, apply_resume_policy, check_resume_fits,
                          check_test_fits, read_training_checkpoint)
from .launch import (ConfigOptionError, add_common_args, check_cfg_options, close_distributed,
                     compile_arguments,
                     exit_on_bad_input, init_cpu_distributed, parse_common_args, prepare_config,
                     task_of)

__all__ = ['CheckpointFitHook', 'apply_resume_policy', 'backbone_from_config',
           'backbone_without_init', 'check_resume_fits', 'check_test_fits',
           'read_training_checkpoint',
           'ConfigOptionError', 'add_common_args', 'check_cfg_options', 'close_distributed',
           'compile_arguments',
           'exit_on_bad_input', 'init_cpu_distributed', 'parse_common_args', 'prepare_config',
           'task_of']
