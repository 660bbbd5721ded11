"""EoMT's predictions in mmseg and mmdet: the losses and the inference.

EoMT's queries and heads live in its backbone (they run inside the ViT), so these
heads hold no weights: each turns the data samples into mask-classification
targets for :class:`MaskClassificationLoss` (every block's prediction) and the
last prediction into the task's output, as mmseg's and mmdet's Mask2Former heads
do with their decoders' (whose classes build a pixel decoder and a transformer
decoder, so they are not reused whole).
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from mmvitpe.registry import MODELS
from mmvitpe.utils.validation import check_bool, check_dict, check_int
from .model import Predictions


class _EoMTHead(BaseModule):
    """What both heads share: the loss on every prediction, the checks of what the
    backbone gives, and the last mask logits at the input's pixels."""

    def __init__(self, num_classes: int, loss: Optional[dict], init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        owner = type(self).__name__
        self.num_classes = check_int(owner, 'num_classes', num_classes)
        loss = dict(check_dict(owner, 'loss', loss) or dict(type='mmvitpe.MaskClassificationLoss'))
        if loss.setdefault('num_classes', self.num_classes) != self.num_classes:
            raise ValueError(f'{owner}: loss num_classes={loss["num_classes"]!r} but the head '
                             f'has num_classes={self.num_classes}; give it once, on the head')
        self.loss_module = MODELS.build(loss)

    def _predictions(self, x) -> Predictions:
        if not isinstance(x, Predictions):
            raise TypeError(f'{type(self).__name__} reads the predictions of the EoMT backbone, '
                            f'got {type(x).__name__}; use backbone=dict(type=\'mmvitpe.EoMT\', '
                            '...) and no neck')
        width = x.class_logits[-1].shape[-1]
        if width != self.num_classes + 1:
            raise ValueError(f'{type(self).__name__}: num_classes={self.num_classes} but the '
                             f'backbone predicts {width - 1} classes (+1 no object); give '
                             'both the same num_classes')
        return x

    def _losses(self, x: Predictions, batch_gt_instances: List[InstanceData]
                ) -> Dict[str, Tensor]:
        """The loss of every prediction, the targets filled up to the pixels the
        mask logits cover (the padding holds no object)."""
        image, padded = x.image_size, x.padded_size
        targets = []
        for gt in batch_gt_instances:
            if tuple(gt.masks.shape[-2:]) != tuple(image):
                raise ValueError(f'{type(self).__name__}: ground-truth masks of size '
                                 f'{tuple(gt.masks.shape[-2:])} for an input of {tuple(image)}; '
                                 'pad them with the image (pad_mask / pad_seg in the data '
                                 'preprocessor)')
            masks = F.pad(gt.masks, (0, padded[1] - image[1], 0, padded[0] - image[0]))
            targets.append(InstanceData(labels=gt.labels, masks=masks))
        return self.loss_module(x.mask_logits, x.class_logits, targets)

    @staticmethod
    def _last_masks(x: Predictions) -> Tensor:
        """The last mask logits, bilinear at the covered pixels, cropped to the input."""
        masks = F.interpolate(x.mask_logits[-1], size=x.padded_size, mode='bilinear',
                              align_corners=False)
        return masks[..., :x.image_size[0], :x.image_size[1]]


@MODELS.register_module()
class EoMTSegHead(_EoMTHead):
    """mmseg decode head of EoMT (semantic segmentation).

    Training: each class present in an image's ``gt_sem_seg`` is one target
    mask (mmseg's ``seg_data_to_instance_data``, ``ignore_index`` left out).
    Inference: per-pixel class scores ``sum_q softmax(class_q)[c] *
    sigmoid(mask_q)`` (no object left out), as EoMT's and Mask2Former's; mmseg's
    ``test_cfg`` picks whole-image or sliding-window inference.

    Args:
        num_classes: Classes (the backbone's too).
        loss: The mask-classification loss (``num_classes`` filled in).
        ignore_index: Label of unlabelled pixels.
        align_corners: mmseg's resize flag for the segmentor's resizing
            (EoMT's bilinear resizing does not align corners).
    """

    def __init__(self, num_classes: int, loss: Optional[dict] = None, ignore_index: int = 255,
                 align_corners: bool = False, init_cfg=None) -> None:
        if check_int(type(self).__name__, 'num_classes', num_classes) < 2:
            raise ValueError(f'{type(self).__name__}: num_classes={num_classes}: a semantic '
                             'map needs at least 2 classes')
        super().__init__(num_classes, loss, init_cfg)
        self.out_channels = self.num_classes
        self.ignore_index = check_int(type(self).__name__, 'ignore_index', ignore_index,
                                      minimum=0)
        self.align_corners = check_bool(type(self).__name__, 'align_corners', align_corners)

    def loss(self, inputs, batch_data_samples, train_cfg=None) -> Dict[str, Tensor]:
        from mmseg.utils import seg_data_to_instance_data
        x = self._predictions(inputs)
        batch_gt_instances = seg_data_to_instance_data(self.ignore_index, batch_data_samples)
        return self._losses(x, batch_gt_instances)

    def forward(self, inputs) -> Tensor:
        """Per-pixel class scores (B, classes, H, W) at the input's size."""
        x = self._predictions(inputs)
        return torch.einsum('bqc,bqhw->bchw', x.class_logits[-1].softmax(-1)[..., :-1],
                            self._last_masks(x).sigmoid())

    def predict(self, inputs, batch_img_metas, test_cfg=None) -> Tensor:
        return self(inputs)


@MODELS.register_module()
class EoMTInstanceHead(_EoMTHead):
    """mmdet head of EoMT for instance segmentation, in mmdet's ``MaskFormer``
    detector (as its ``panoptic_head``, with ``MaskFormerFusionHead`` and
    ``instance_on=True``: top-k query-class pairs, mask scores, boxes from the
    masks, as EoMT's and Mask2Former's instance inference).

    Args:
        num_things_classes: Instance classes (COCO: 80).
        num_stuff_classes: Must be 0: EoMT's panoptic inference is not built.
        loss: The mask-classification loss (``num_classes`` filled in).
        train_cfg, test_cfg: Given by ``MaskFormer``; unused here (the loss has
            its own settings, the fusion head reads ``test_cfg``).
    """

    def __init__(self, num_things_classes: int = 80, num_stuff_classes: int = 0,
                 loss: Optional[dict] = None, train_cfg=None, test_cfg=None,
                 init_cfg=None) -> None:
        owner = type(self).__name__
        if check_int(owner, 'num_stuff_classes', num_stuff_classes, minimum=0):
            raise ValueError(f'{owner}: num_stuff_classes={num_stuff_classes}: only instance '
                             'segmentation is built (num_stuff_classes=0)')
        super().__init__(num_things_classes, loss, init_cfg)
        self.num_things_classes, self.num_stuff_classes = self.num_classes, 0

    def loss(self, x, batch_data_samples) -> Dict[str, Tensor]:
        x = self._predictions(x)
        device = x.class_logits[-1].device
        targets = [InstanceData(labels=s.gt_instances.labels,
                                masks=s.gt_instances.masks.to_tensor(torch.bool, device))
                   for s in batch_data_samples]
        return self._losses(x, targets)

    def forward(self, x, batch_data_samples=None) -> Tuple[Tensor, Tensor]:
        """Class logits and mask logits at the batch's input size, what
        ``MaskFormerFusionHead.predict`` reads."""
        x = self._predictions(x)
        return x.class_logits[-1], self._last_masks(x)

    def predict(self, x, batch_data_samples) -> Tuple[Tensor, Tensor]:
        return self(x, batch_data_samples)
