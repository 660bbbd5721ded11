"""DistributedDataParallel that also works for CPU training (gloo).

mmengine 0.10's Runner passes ``device_ids=[LOCAL_RANK]`` to every DDP wrapper,
which torch rejects for a module on the CPU; mmengine's own
``MMDistributedDataParallel`` otherwise works there, so only that argument
is dropped. tools/train.py selects this wrapper on machines without CUDA.
"""
# Imported before any process group exists (``import mmvitpe`` precedes it), so
# that its functions' ``group=group.WORLD`` defaults hold None: imported after
# init_process_group (torch._dynamo imports it), they would hold the default
# group for good, and destroy_process_group could not end its gloo threads
# (see mmvitpe.apis.close_distributed).
import torch.distributed.nn.functional  # noqa: F401
from mmengine.model import MMDistributedDataParallel

from mmvitpe.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUCompatibleDDP(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` with ``device_ids`` dropped for CPU modules."""

    def __init__(self, module, device_ids=None, **kwargs) -> None:
        if next(module.parameters()).device.type == 'cpu':
            device_ids = None
        super().__init__(module=module, device_ids=device_ids, **kwargs)
