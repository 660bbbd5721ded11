"""EoMT's mask-classification loss: equal to the official EoMT loss (golden,
tools/golden/make_eomt_fixtures.py), its names, the no-instance case, gradients and
the checks of its inputs."""
import os
import types

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData

from mmvitpe.models.eomt.loss import MaskClassificationLoss
from mmvitpe.registry import MODELS

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'golden',
                      'eomt.pt')
WEIGHTS = dict(class_weight=2.0, mask_weight=5.0, dice_weight=5.0)


@pytest.fixture(scope='module')
def golden():
    return torch.load(GOLDEN, weights_only=True)['loss']


@pytest.fixture(scope='module')
def criterion(golden):
    config = golden['config']
    return MODELS.build(dict(
        type='mmvitpe.MaskClassificationLoss', num_classes=config['num_labels'],
        num_points=config['num_points'], oversample_ratio=config['oversample_ratio'],
        importance_sample_ratio=config['importance_sample_ratio'],
        class_weight=config['class_coefficient'], mask_weight=config['mask_coefficient'],
        dice_weight=config['dice_coefficient'],
        no_object_weight=config['no_object_coefficient']))


def instances(golden):
    return [InstanceData(labels=t['labels'], masks=t['masks']) for t in golden['targets']]


def test_matching_equals_eomts(golden, criterion):
    for block, (masks, classes) in enumerate(zip(golden['mask_logits'], golden['class_logits'])):
        torch.manual_seed(golden['seed'])
        matches = criterion.match(masks, classes, instances(golden))
        assert len(matches) == len(golden['indices'][block])
        for (queries, gts), (expected_queries, expected_gts) in zip(matches,
                                                                    golden['indices'][block]):
            assert queries.tolist() == expected_queries.tolist(), block
            assert gts.tolist() == expected_gts.tolist(), block


def test_losses_equal_eomts_weighted(golden, criterion):
    """Per block, the weighted losses are upstream's unweighted ones times the weights,
    and their sum over the blocks is upstream's loss_total."""
    total = 0.
    for block, (masks, classes) in enumerate(zip(golden['mask_logits'], golden['class_logits'])):
        torch.manual_seed(golden['seed'])
        loss_cls, loss_mask, loss_dice = criterion.loss_single(masks, classes, instances(golden))
        expected = golden['losses'][block]
        for got, key, weight in ((loss_cls, 'loss_cross_entropy', WEIGHTS['class_weight']),
                                 (loss_mask, 'loss_mask', WEIGHTS['mask_weight']),
                                 (loss_dice, 'loss_dice', WEIGHTS['dice_weight'])):
            torch.testing.assert_close(got, expected[key] * weight, rtol=1e-5, atol=1e-5,
                                       msg=f'block {block} {key}')
        total = total + loss_cls + loss_mask + loss_dice
    torch.testing.assert_close(total, golden['loss_total'], rtol=1e-5, atol=1e-5)


def test_forward_names_each_prediction_as_mask2former(golden, criterion):
    masks, classes = golden['mask_logits'][:2], golden['class_logits'][:2]
    torch.manual_seed(golden['seed'])
    losses = criterion(list(masks), list(classes), instances(golden))
    assert sorted(losses) == sorted(['d0.loss_cls', 'd0.loss_mask', 'd0.loss_dice',
                                     'loss_cls', 'loss_mask', 'loss_dice'])
    # the predictions in order, on the same random stream
    torch.manual_seed(golden['seed'])
    for prefix, mask_logits, class_logits in zip(('d0.', ''), masks, classes):
        expected = criterion.loss_single(mask_logits, class_logits, instances(golden))
        for name, value in zip(('loss_cls', 'loss_mask', 'loss_dice'), expected):
            torch.testing.assert_close(losses[prefix + name], value, rtol=0, atol=0)


def test_images_without_instances(golden, criterion):
    masks = golden['mask_logits'][-1].repeat(2, 1, 1, 1).requires_grad_()
    classes = golden['class_logits'][-1].repeat(2, 1, 1).requires_grad_()
    empty = InstanceData(labels=torch.zeros(0, dtype=torch.long),
                         masks=torch.zeros(0, *golden['targets'][0]['masks'].shape[1:],
                                           dtype=torch.bool))
    # next to an image with instances: all of the empty image's queries are no-object
    matches = criterion.match(masks, classes, instances(golden) + [empty])
    assert len(matches[0][0]) == 2 and len(matches[1][0]) == 0
    losses = criterion.loss_single(masks, classes, instances(golden) + [empty])
    assert all(torch.isfinite(loss) and loss > 0 for loss in losses)
    # no instance in the batch: mask losses 0 but in the graph; one class weight, so
    # the class loss is the plain mean cross-entropy towards no-object
    loss_cls, loss_mask, loss_dice = criterion.loss_single(masks, classes, [empty, empty])
    no_object = torch.full(classes.shape[:2], criterion.num_classes).flatten()
    torch.testing.assert_close(
        loss_cls, WEIGHTS['class_weight'] * F.cross_entropy(classes.flatten(0, 1), no_object))
    assert loss_mask.item() == loss_dice.item() == 0
    (loss_cls + loss_mask + loss_dice).backward()
    assert classes.grad.abs().sum() > 0
    assert masks.grad is not None and not masks.grad.any()


def test_gradients_are_finite_and_reach_both_inputs(golden, criterion):
    masks = golden['mask_logits'][0].clone().requires_grad_()
    classes = golden['class_logits'][0].clone().requires_grad_()
    sum(criterion([masks], [classes], instances(golden)).values()).backward()
    for grad in (masks.grad, classes.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize('change, error, match', [
    (dict(class_logits=torch.zeros(1, 8, 5)), ValueError,
     r'class_logits has 5 logits per query, expected num_classes \+ 1 = 6'),
    (dict(class_logits=torch.zeros(1, 7, 6)), ValueError,
     r'mask_logits \(1, 8, 16, 24\) and class_logits \(1, 7, 6\) differ'),
    (dict(mask_logits=torch.zeros(8, 16, 24)), ValueError,
     r'mask_logits must be \(B, Q, h, w\), got shape \(8, 16, 24\)'),
    (dict(labels=torch.tensor([1, 5])), ValueError,
     r'batch_gt_instances\[0\]\.labels has \[5\] outside \[0, 5\)'),
    (dict(labels=torch.tensor([-1, 3])), ValueError,
     r'batch_gt_instances\[0\]\.labels has \[-1\] outside \[0, 5\)'),
    (dict(labels=torch.tensor([1.0, 3.0])), ValueError, r'labels must be a 1-D integer tensor'),
    (dict(labels=torch.tensor([1])), ValueError,
     r'masks has shape \(2, 64, 96\) for 1 labels, expected \(1, H, W\)'),
    (dict(images=2), ValueError, r'batch_gt_instances has 2 images, the predictions 1'),
])
def test_bad_predictions_and_targets_are_named(golden, criterion, change, error, match):
    target = golden['targets'][0]
    # a namespace: InstanceData itself refuses fields of different lengths
    gt = types.SimpleNamespace(labels=change.get('labels', target['labels']),
                               masks=target['masks'])
    mask_logits = change.get('mask_logits', golden['mask_logits'][0])
    class_logits = change.get('class_logits', golden['class_logits'][0])
    with pytest.raises(error, match=match):
        criterion([mask_logits], [class_logits], [gt] * change.get('images', 1))


def test_gt_masks_of_different_sizes_are_refused(golden, criterion):
    small = InstanceData(labels=torch.tensor([1]), masks=torch.ones(1, 32, 48, dtype=torch.bool))
    masks = golden['mask_logits'][0].repeat(2, 1, 1, 1)
    classes = golden['class_logits'][0].repeat(2, 1, 1)
    with pytest.raises(ValueError, match=r'gt masks differ in size \[\(32, 48\), \(64, 96\)\]'):
        criterion.loss_single(masks, classes, instances(golden) + [small])


@pytest.mark.parametrize('mask_entries, class_entries', [(2, 1), (0, 0)])
def test_prediction_lists_must_pair_up(golden, criterion, mask_entries, class_entries):
    with pytest.raises(ValueError, match=f'{mask_entries} mask_logits and {class_entries} '
                                         'class_logits entries'):
        criterion(golden['mask_logits'][:mask_entries], golden['class_logits'][:class_entries],
                  instances(golden))
    with pytest.raises(TypeError, match='mask_logits must be a list of tensors'):
        criterion(golden['mask_logits'][0], golden['class_logits'][:1], instances(golden))


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(num_points=0), ValueError, r'num_points=0 must be an int >= 1'),
    (dict(importance_sample_ratio=1.5), ValueError,
     r'importance_sample_ratio=1\.5 must be in \[0\.0, 1\.0\]'),
    (dict(oversample_ratio=0.5), ValueError, r'oversample_ratio=0\.5 must be in \[1\.0, inf\)'),
    (dict(mask_weight=-1.0), ValueError, r'mask_weight=-1\.0 must be in \[0\.0, inf\)'),
    (dict(no_object_weight=0), ValueError, r'no_object_weight=0 must be in \(0\.0, inf\)'),
    (dict(class_weight=0, mask_weight=0, dice_weight=0), ValueError,
     r'class_weight, mask_weight and dice_weight are all 0'),
    (dict(num_classes=0), ValueError, r'num_classes=0 must be an int >= 1'),
    (dict(num_classes=True), TypeError, r'num_classes=True must be an int, got bool'),
])
def test_bad_constructor_values_are_named(kwargs, error, match):
    with pytest.raises(error, match=f'MaskClassificationLoss: {match}'):
        MaskClassificationLoss(**dict(dict(num_classes=5), **kwargs))
