"""EoMT's masked-attention annealing, stepped by the runner's iteration."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmvitpe.registry import HOOKS


@HOOKS.register_module()
class EoMTMaskAnnealingHook(Hook):
    """Before each training iteration, set every EoMT module's mask probabilities
    for ``runner.iter`` (its ``mask_annealing`` schedule, see ``EoMT.set_step``).

    EoMT's Lightning module sets them after each step from the global step, so step
    ``t`` runs with the probabilities of ``t``: the same as here, resumed runs
    included (the probabilities follow the iteration, not a saved state).
    """
    priority = 'HIGH'

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        from mmvitpe.models.eomt import EoMT  # the engine is imported before the models
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        eomts = [m for m in model.modules() if isinstance(m, EoMT) and m.masked_attn]
        if not eomts:
            raise RuntimeError('EoMTMaskAnnealingHook: the model has no EoMT module with '
                               'masked_attn=True; remove the hook from custom_hooks')
        for eomt in eomts:
            eomt.set_step(runner.iter)
