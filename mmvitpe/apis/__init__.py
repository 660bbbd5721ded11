from .launch import init_cpu_distributed, prepare_config, task_of

__all__ = ['init_cpu_distributed', 'prepare_config', 'task_of']
