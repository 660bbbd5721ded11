"""Stop training at the first non-finite input or loss, naming where it came from.

One NaN pixel in a training batch makes every BatchNorm running mean it passes
NaN for good (the running statistics are updated in the forward pass, before
any loss could be checked), and the run goes on logging NaN. mmdet's
``CheckInvalidLossHook`` looks at the loss every 50 iterations and only in
mmdet; this hook checks every batch's images before the step and its loss after
it, in any OpenMMLab runner, and stops with the iteration and the samples' files.
"""
import math
from typing import Optional, Sequence

import torch
from mmengine.hooks import Hook

from mmvitpe.registry import HOOKS
from mmvitpe.weights.reader import non_finite


class NonFiniteError(RuntimeError):
    """A training batch or loss with NaN or infinite values."""


def _sample_files(data_batch: dict, indices: Optional[Sequence[int]] = None) -> list:
    samples = data_batch.get('data_samples') or []
    chosen = range(len(samples)) if indices is None else indices
    return [samples[i].metainfo.get('img_path', f'sample {i} (no img_path)')
            for i in chosen if i < len(samples)]


@HOOKS.register_module()
class NonFiniteCheckHook(Hook):
    """Raise :class:`NonFiniteError` at the first batch whose images (before the
    model, so before any running statistic) or whose loss are not finite.

    Images of an integer dtype (``LoadImageFromFile``'s uint8) hold no NaN and
    are not scanned; float images (``to_float32``, TIFF, ``.npy``) are.
    """
    priority = 'VERY_HIGH'

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if not isinstance(data_batch, dict):
            return
        inputs = data_batch.get('inputs')
        images = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        bad = [i for i, img in enumerate(images) if isinstance(img, torch.Tensor)
               and non_finite(img)]
        if bad:
            raise NonFiniteError(
                f'iteration {runner.iter + 1}: NaN or infinite pixels in the training images '
                f'{_sample_files(data_batch, bad) or bad}; training stopped before they '
                'reached the model (its BatchNorm statistics would stay NaN). Fix or remove '
                'those files, or the transform that produced the values')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        loss = (outputs or {}).get('loss')
        if isinstance(loss, torch.Tensor):  # a float of it, without autograd's warning
            loss = loss.detach()
        if loss is not None and not math.isfinite(float(loss)):
            files = _sample_files(data_batch) if isinstance(data_batch, dict) else []
            raise NonFiniteError(
                f'iteration {runner.iter + 1}: the loss is {float(loss)} on the batch of '
                f'{files or "unnamed samples"}; training stopped. Lower the learning rate or '
                'check those samples; the checkpoints before this iteration are unaffected')
