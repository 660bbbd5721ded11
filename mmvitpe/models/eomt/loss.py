"""EoMT's mask-classification loss (tue-mps/eomt ``training/mask_classification_loss.py``,
on transformers' ``Mask2FormerLoss``) composed of mmdet's Mask2Former parts.

For each prediction (EoMT predicts before each of its last blocks and after the
last one):

* queries are matched one-to-one to the ground-truth instances by mmdet's
  ``HungarianAssigner`` on ``num_points`` uniformly random points per image
  (costs: ``-class_weight * p(class)``, ``mask_weight`` * sigmoid cross-entropy,
  ``dice_weight`` * dice);
* every query gets a cross-entropy over the classes and "no object" (weighted
  ``no_object_weight``), averaged over the class weights of the targets;
* every matched mask gets sigmoid cross-entropy and dice at ``num_points`` points
  picked by uncertainty (Mask2Former's importance sampling), averaged over the
  number of matched masks of all processes.

The mask logits may be coarser than the ground-truth masks (EoMT: stride 4): the
points are in normalised coordinates, sampled bilinearly from both.
"""
from typing import Dict, List, Sequence, Tuple

import torch
from mmengine.model import BaseModule
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData
from torch import Tensor

from mmvitpe.registry import MODELS
from mmvitpe.utils.validation import check_int, check_positive, check_real

Match = Tuple[Tensor, Tensor]


@MODELS.register_module()
class MaskClassificationLoss(BaseModule):
    """EoMT's (and Mask2Former's) matching and losses; defaults are EoMT's.

    mmdet's ``Mask2FormerHead._get_targets_single`` and ``_loss_by_feat_single``
    compute exactly this, but they are methods of a head that cannot be built
    without its pixel decoder and transformer decoder, which EoMT does not have;
    so the same parts (assigner, costs, losses, point sampling) are composed here.

    Args:
        num_classes: Number of classes, without "no object".
        num_points: Points per mask for the matching costs and for the mask losses.
        oversample_ratio: The mask losses' points are picked among
            ``num_points * oversample_ratio`` random ones (>= 1).
        importance_sample_ratio: Share of the mask losses' points picked as the most
            uncertain (logit nearest 0) of those; the rest are uniformly random.
        class_weight: Weight of the class cost and of the class loss.
        mask_weight: Weight of the sigmoid cross-entropy cost and loss.
        dice_weight: Weight of the dice cost and loss.
        no_object_weight: Class-loss weight of the queries matched to nothing (> 0).
        init_cfg: mmengine's init config (the loss has no weights).
    """

    def __init__(self, num_classes: int, num_points: int = 12544,
                 oversample_ratio: float = 3.0, importance_sample_ratio: float = 0.75,
                 class_weight: float = 2.0, mask_weight: float = 5.0, dice_weight: float = 5.0,
                 no_object_weight: float = 0.1, init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        owner = type(self).__name__
        self.num_classes = check_int(owner, 'num_classes', num_classes)
        self.num_points = check_int(owner, 'num_points', num_points)
        self.oversample_ratio = check_real(owner, 'oversample_ratio', oversample_ratio, low=1.)
        self.importance_sample_ratio = check_real(
            owner, 'importance_sample_ratio', importance_sample_ratio, low=0., high=1.)
        class_weight = check_real(owner, 'class_weight', class_weight, low=0.)
        mask_weight = check_real(owner, 'mask_weight', mask_weight, low=0.)
        dice_weight = check_real(owner, 'dice_weight', dice_weight, low=0.)
        if class_weight == mask_weight == dice_weight == 0:
            raise ValueError(f'{owner}: class_weight, mask_weight and dice_weight are all 0: '
                             'nothing to match queries by and nothing to learn')
        no_object_weight = check_positive(owner, 'no_object_weight', no_object_weight)
        # Imported here, not with the module: mmdet loads mmcv's compiled ops, which the
        # ViT core and its backbones run without.
        from mmdet.models.losses import CrossEntropyLoss, DiceLoss
        from mmdet.registry import TASK_UTILS

        # In mmdet's scope: under mmseg's (its HungarianAssigner and costs have the same
        # names) the names would resolve to mmseg's classes.
        with DefaultScope.overwrite_default_scope('mmdet'):
            self.assigner = TASK_UTILS.build(dict(type='HungarianAssigner', match_costs=[
                dict(type='ClassificationCost', weight=class_weight),
                dict(type='CrossEntropyLossCost', weight=mask_weight, use_sigmoid=True),
                dict(type='DiceCost', weight=dice_weight, pred_act=True, eps=1.0)]))
        self.loss_cls = CrossEntropyLoss(
            use_sigmoid=False, loss_weight=class_weight, reduction='mean',
            class_weight=[1.0] * self.num_classes + [no_object_weight])
        self.loss_mask = CrossEntropyLoss(use_sigmoid=True, reduction='mean',
                                          loss_weight=mask_weight)
        self.loss_dice = DiceLoss(use_sigmoid=True, activate=True, reduction='mean',
                                  naive_dice=True, eps=1.0, loss_weight=dice_weight)

    def forward(self, mask_logits: Sequence[Tensor], class_logits: Sequence[Tensor],
                batch_gt_instances: Sequence[InstanceData]) -> Dict[str, Tensor]:
        """The weighted losses of every prediction, named as mmdet's Mask2Former: the
        last prediction's ``loss_cls``, ``loss_mask``, ``loss_dice``, the earlier ones'
        ``d{i}.loss_cls``, ... in order."""
        owner = type(self).__name__
        for name, value in (('mask_logits', mask_logits), ('class_logits', class_logits)):
            if not isinstance(value, (list, tuple)):
                raise TypeError(f'{owner}: {name} must be a list of tensors, one per '
                                f'prediction, got {type(value).__name__}')
        if not mask_logits or len(mask_logits) != len(class_logits):
            raise ValueError(f'{owner}: {len(mask_logits)} mask_logits and {len(class_logits)} '
                             'class_logits entries; expected as many of each, at least 1 '
                             '(one per prediction)')
        losses = {}
        last = len(mask_logits) - 1
        for i, (masks, classes) in enumerate(zip(mask_logits, class_logits)):
            prefix = '' if i == last else f'd{i}.'
            loss_cls, loss_mask, loss_dice = self.loss_single(masks, classes, batch_gt_instances)
            losses.update({f'{prefix}loss_cls': loss_cls, f'{prefix}loss_mask': loss_mask,
                           f'{prefix}loss_dice': loss_dice})
        return losses

    @torch.no_grad()
    def match(self, mask_logits: Tensor, class_logits: Tensor,
              batch_gt_instances: Sequence[InstanceData]) -> List[Match]:
        """Per image, the matched query indices (ascending) and their instances'
        indices, as mmdet's ``Mask2FormerHead._get_targets_single`` matches (one draw of
        ``torch.rand(1, num_points, 2)`` per image, as transformers' matcher too).

        Args:
            mask_logits: (B, Q, h, w).
            class_logits: (B, Q, num_classes + 1).
            batch_gt_instances: Per image ``labels`` (n,) and ``masks`` (n, H, W).
        """
        from mmcv.ops import point_sample
        self._check_inputs(mask_logits, class_logits, batch_gt_instances)
        matches = []
        for mask_pred, cls_score, gt in zip(mask_logits, class_logits, batch_gt_instances):
            point_coords = torch.rand((1, self.num_points, 2), device=cls_score.device)
            pred_points = point_sample(mask_pred.unsqueeze(1),
                                       point_coords.repeat(len(mask_pred), 1, 1)).squeeze(1)
            gt_points = point_sample(gt.masks.unsqueeze(1).float(),
                                     point_coords.repeat(len(gt.masks), 1, 1)).squeeze(1)
            assigned = self.assigner.assign(
                pred_instances=InstanceData(scores=cls_score, masks=pred_points),
                gt_instances=InstanceData(labels=gt.labels, masks=gt_points)).gt_inds
            query_inds = torch.nonzero(assigned > 0).squeeze(1)
            matches.append((query_inds, assigned[query_inds] - 1))
        return matches

    def loss_single(self, mask_logits: Tensor, class_logits: Tensor,
                    batch_gt_instances: Sequence[InstanceData]) -> Tuple[Tensor, Tensor, Tensor]:
        """The weighted (class, mask, dice) losses of one prediction, as mmdet's
        ``Mask2FormerHead._loss_by_feat_single``. Arguments as :meth:`match`."""
        from mmcv.ops import point_sample
        from mmdet.models.utils import get_uncertain_point_coords_with_randomness
        from mmdet.utils import reduce_mean
        matches = self.match(mask_logits, class_logits, batch_gt_instances)
        labels = torch.full(class_logits.shape[:2], self.num_classes, dtype=torch.long,
                            device=class_logits.device)
        for image, ((query_inds, gt_inds), gt) in enumerate(zip(matches, batch_gt_instances)):
            labels[image, query_inds] = gt.labels[gt_inds].long()
        labels = labels.flatten()
        class_weight = class_logits.new_tensor(self.loss_cls.class_weight)
        loss_cls = self.loss_cls(class_logits.flatten(0, 1), labels,
                                 avg_factor=class_weight[labels].sum())

        # before any return: every process takes part in the reduction
        num_masks = reduce_mean(class_logits.new_tensor(
            float(sum(len(query_inds) for query_inds, _ in matches)))).clamp(min=1)
        images = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(matches)])
        mask_preds = mask_logits[images, torch.cat([q for q, _ in matches])]
        if len(mask_preds) == 0:
            # no instance in the batch: zero mask losses that still reach the graph
            return loss_cls, mask_preds.sum(), mask_preds.sum()
        with torch.no_grad():
            mask_targets = torch.cat([gt.masks[gt_inds] for (_, gt_inds), gt in
                                      zip(matches, batch_gt_instances)])
            point_coords = get_uncertain_point_coords_with_randomness(
                mask_preds.unsqueeze(1), None, self.num_points, self.oversample_ratio,
                self.importance_sample_ratio)
            target_points = point_sample(mask_targets.unsqueeze(1).float(),
                                         point_coords).squeeze(1)
        pred_points = point_sample(mask_preds.unsqueeze(1), point_coords).squeeze(1)
        loss_dice = self.loss_dice(pred_points, target_points, avg_factor=num_masks)
        loss_mask = self.loss_mask(pred_points.reshape(-1), target_points.reshape(-1),
                                   avg_factor=num_masks * self.num_points)
        return loss_cls, loss_mask, loss_dice

    def _check_inputs(self, mask_logits: Tensor, class_logits: Tensor,
                      batch_gt_instances: Sequence[InstanceData]) -> None:
        owner = type(self).__name__
        for name, value, dims, layout in (
                ('mask_logits', mask_logits, 4, '(B, Q, h, w)'),
                ('class_logits', class_logits, 3, '(B, Q, num_classes + 1)')):
            if not isinstance(value, Tensor):
                raise TypeError(f'{owner}: {name} must be a tensor {layout}, got '
                                f'{type(value).__name__}')
            if value.dim() != dims:
                raise ValueError(f'{owner}: {name} must be {layout}, got shape '
                                 f'{tuple(value.shape)}')
        if class_logits.shape[-1] != self.num_classes + 1:
            raise ValueError(f'{owner}: class_logits has {class_logits.shape[-1]} logits per '
                             f'query, expected num_classes + 1 = {self.num_classes + 1} '
                             '(the classes and "no object")')
        if mask_logits.shape[:2] != class_logits.shape[:2]:
            raise ValueError(f'{owner}: mask_logits {tuple(mask_logits.shape)} and class_logits '
                             f'{tuple(class_logits.shape)} differ in (batch, queries)')
        if len(batch_gt_instances) != len(mask_logits) or not len(mask_logits):
            raise ValueError(f'{owner}: batch_gt_instances has {len(batch_gt_instances)} '
                             f'images, the predictions {len(mask_logits)}; expected as many, '
                             'at least 1')
        sizes = set()
        for i, gt in enumerate(batch_gt_instances):
            labels, masks = gt.labels, gt.masks
            if labels.dim() != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
                raise ValueError(f'{owner}: batch_gt_instances[{i}].labels must be a 1-D '
                                 f'integer tensor, got {labels.dtype} {tuple(labels.shape)}')
            if masks.dim() != 3 or len(masks) != len(labels):
                raise ValueError(f'{owner}: batch_gt_instances[{i}].masks has shape '
                                 f'{tuple(masks.shape)} for {len(labels)} labels, expected '
                                 f'({len(labels)}, H, W)')
            bad = labels[(labels < 0) | (labels >= self.num_classes)]
            if len(bad):
                raise ValueError(f'{owner}: batch_gt_instances[{i}].labels has {bad.tolist()} '
                                 f'outside [0, {self.num_classes}) (num_classes='
                                 f'{self.num_classes})')
            sizes.add(tuple(masks.shape[1:]))
        if len(sizes) > 1:
            # the mask logits of every image cover the same (padded) frame
            raise ValueError(f'{owner}: the images\' gt masks differ in size {sorted(sizes)}; '
                             'expected all at the batch\'s padded size')
