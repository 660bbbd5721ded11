"""What timm's train.py does with our models, through the same timm APIs, and the
dense fine-tuning from what it saves.

train.py: ``create_model(name, in_chans=, num_classes=, drop_path_rate=)``,
``set_grad_checkpointing()``, ``create_optimizer_v2(layer_decay=)``, a timm
scheduler (which applies the groups' ``lr_scale``), Mixup with
SoftTargetCrossEntropy, ``ModelEmaV3``, and ``CheckpointSaver``, whose file
(regular and EMA weights) ViTAdapter loads through ``init_cfg``.
"""
import argparse
import logging
import os

import numpy as np
import pytest
import timm
import torch
from mmengine.logging import MMLogger
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import CheckpointSaver, ModelEmaV3

import mmvitpe  # noqa: F401  (registers the models)
from mmvitpe.engine import LayerDecayOptimizerConstructor
from mmvitpe.models import ViTAdapter
from mmvitpe.registry import POS_ENCODINGS
from mmvitpe.weights import CheckpointError

SIZE, CLASSES, STEPS = 48, 4, 8
FOUR = [[0, 0], [1, 1], [2, 2], [3, 3]]

pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


def lr_scales_and_decays(optimizer, model):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (group['lr_scale'], group['weight_decay'])
            for group in optimizer.param_groups for p in group['params']}


@pytest.mark.parametrize('scheme', sorted(POS_ENCODINGS.module_dict))
def test_timm_layer_decay_equals_ours(scheme):
    """Per parameter, timm's --layer-decay scale and weight decay are our constructor's
    (MPVG's per-block norms at their block's rate, not timm's parameter-count fallback)."""
    model = timm.create_model(f'test_pevit_{scheme.lower()}', num_classes=CLASSES,
                              device='meta')
    ours = LayerDecayOptimizerConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)),
        dict(decay_rate=0.65))(model).optimizer
    theirs = create_optimizer_v2(model, opt='adamw', lr=1e-3, weight_decay=0.05,
                                 layer_decay=0.65)
    expected = lr_scales_and_decays(ours, model)
    assert lr_scales_and_decays(theirs, model) == expected
    assert len(expected) == len(list(model.parameters()))
    if scheme == 'MPVG':
        assert expected['pe.norms.2.weight'] == (0.65 ** 2, 0.)
        assert expected['pe.last_norm_layer.weight'] == (1.0, 0.)


def toy_batch():
    """Class c: a bright quadrant c, plus noise; learnable in a few steps."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(2 * CLASSES) % CLASSES
    images = torch.randn(len(labels), 3, SIZE, SIZE, generator=gen) * 0.3
    half = SIZE // 2
    for i, c in enumerate(labels.tolist()):
        r, q = divmod(c, 2)
        images[i, :, r * half:(r + 1) * half, q * half:(q + 1) * half] += 2.
    return images, labels


def train_like_timm(name, steps=STEPS):
    """train.py's train_one_epoch on one batch, with DeiT's options."""
    torch.manual_seed(0)
    np.random.seed(0)  # timm's Mixup draws from numpy: the run must not depend on test order
    model = timm.create_model(name, in_chans=3, num_classes=CLASSES, drop_path_rate=0.1,
                              img_size=SIZE)
    model.set_grad_checkpointing()
    optimizer = create_optimizer_v2(model, opt='adamw', lr=2e-3, weight_decay=0.05,
                                    layer_decay=0.65)
    scheduler, _ = create_scheduler_v2(optimizer, sched='cosine', num_epochs=2,
                                       warmup_epochs=1, warmup_lr=1e-4, min_lr=1e-5,
                                       step_on_epochs=False, updates_per_epoch=steps // 2)
    for group in optimizer.param_groups:  # the scheduler applies the layer-decay scales
        assert group['lr'] == pytest.approx(1e-4 * group['lr_scale'])
    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=CLASSES)
    criterion = SoftTargetCrossEntropy()
    ema = ModelEmaV3(model, decay=0.5)
    images, labels = toy_batch()

    def clean_loss():
        model.eval()
        with torch.no_grad():
            loss = torch.nn.functional.cross_entropy(model(images), labels).item()
        model.train()
        return loss

    before, losses = clean_loss(), []
    model.train()
    for step in range(steps):
        mixed, targets = mixup(images, labels)
        loss = criterion(model(mixed), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step_update(num_updates=step + 1)
        ema.update(model, step=step)
        losses.append(loss.item())
    return model, optimizer, ema, before, losses, clean_loss()


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def load_into_adapter(path, scheme, **init):
    adapter = ViTAdapter(embed_dim=64, depth=4, num_heads=2, deform_num_heads=2, conv_inplane=8,
                         interaction_indexes=FOUR, pretrain_size=SIZE, final_norm=True,
                         pos_embed=dict(type=scheme),
                         init_cfg=dict(type='Pretrained', checkpoint=path, **init))
    records = Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(records)
    try:
        adapter.init_weights()
    finally:
        logger.removeHandler(records)
    return adapter.eval(), '\n'.join(records.messages)


def vit_features(adapter, img):
    with torch.no_grad():
        x, state = adapter.embed(img)
        return adapter.finalize(adapter.forward_blocks(x, state), state)


@pytest.mark.parametrize('scheme', ['LearnedPE', 'MPVG', 'SPSA'])
def test_pretrain_like_train_py_then_fine_tune_dense(tmp_path, scheme):
    name = f'test_pevit_{scheme.lower()}'
    model, optimizer, ema, before, losses, after = train_like_timm(name)
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert after < before, (before, after, losses)

    args = argparse.Namespace(model=name, layer_decay=0.65, model_ema=True, mixup=0.8,
                              cutmix=1.0, drop_path=0.1, grad_checkpointing=True)
    saver = CheckpointSaver(model, optimizer, args=args, model_ema=ema,
                            checkpoint_dir=str(tmp_path), recovery_dir=str(tmp_path),
                            decreasing=True)
    saver.save_checkpoint(epoch=0, metric=after)
    path = os.path.join(tmp_path, 'last.pth.tar')

    img = torch.randn(1, 3, SIZE + 16, SIZE - 16)  # another grid than pretraining's
    for key, source in ((None, model), ('state_dict_ema', ema.module)):
        adapter, report = load_into_adapter(path, scheme, **({'key': key} if key else {}))
        source.eval()
        with torch.no_grad():
            expected = source.forward_features(img)
        torch.testing.assert_close(vit_features(adapter, img), expected, rtol=0, atol=0)
        assert f'last.pth.tar{f" [{key}]" if key else ""} into ViTAdapter' in report
        assert 'dropped' in report and 'head.weight' in report
    ema_weight = ema.module.state_dict()['blocks.0.mlp.fc1.weight']
    assert not torch.equal(ema_weight, model.state_dict()['blocks.0.mlp.fc1.weight'])


def test_a_bad_checkpoint_key_names_the_entries_that_hold_weights(tmp_path):
    model = timm.create_model('test_pevit_learnedpe', num_classes=CLASSES)
    path = str(tmp_path / 'last.pth.tar')
    torch.save({'epoch': 3, 'state_dict': model.state_dict(),
                'optimizer': {'state': {}, 'param_groups': []}}, path)
    with pytest.raises(CheckpointError, match=r"no weights under key 'state_dict_ema'; entries "
                                              r"holding weights: \['state_dict'\]"):
        load_into_adapter(path, 'LearnedPE', key='state_dict_ema')
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="a plain state dict: give no key"):
        load_into_adapter(path, 'LearnedPE', key='model_ema')
