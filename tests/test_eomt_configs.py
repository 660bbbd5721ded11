"""EoMT from configs: every EoMT config trains a step (mmseg's EncoderDecoder, mmdet's
MaskFormer), mmseg's and mmdet's inference, and the heads' checks."""
import glob
import os

import pytest
import torch

from helpers import REPO, seg_batch

CONFIGS = sorted(glob.glob(os.path.join(REPO, 'configs/eomt/*.py')))
TINY = dict(embed_dim=32, depth=4, num_heads=2, init_cfg=None, num_blocks=2,
            mask_annealing=dict(start_iters=[0, 2], end_iters=[4, 6]))


def build(path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(path)
    cfg.model.backbone.update(TINY)
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    return cfg, registry.build(cfg.model)


def det_batch():
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(2, [[3, 64, 96], [3, 80, 70]], num_classes=80, with_mask=True)


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_eomt_configs_train_one_step_at_a_tiny_size(path):
    """The config's segmentor or detector, loss, optimizer groups and schedule with a
    4-block trunk of width 32: one step at masking probability 1 gives a finite
    loss on every prediction and moves the queries, not the ViT (its warmup waits
    for the heads')."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS
    cfg, model = build(path)
    wrapper = build_optim_wrapper(model.train(), cfg.optim_wrapper)
    (scheduler,) = [PARAM_SCHEDULERS.build(dict(s, optimizer=wrapper))
                    for s in cfg.param_scheduler]
    scheduler.step()  # iteration 1: the heads warm up, the ViT waits at lr 0
    assert wrapper.param_groups[0]['lr'] == 0 and wrapper.param_groups[-2]['lr'] > 0
    model.backbone.set_step(1)
    before = [p.detach().clone() for p in (model.backbone.blocks[3].attn.qkv.weight,
                                           model.backbone.q.weight)]
    if cfg.default_scope == 'mmdet':
        model.data_preprocessor.batch_augments = None  # not 640 squares here
        model.data_preprocessor.pad_size_divisor = 32
        batch = det_batch()
    else:
        batch = seg_batch(num_classes=150)
    losses = model(**model.data_preprocessor(batch, True), mode='loss')
    assert {k.split('.')[-1] for k in losses} == {'loss_cls', 'loss_mask', 'loss_dice'}
    assert len(losses) == 3 * 3  # before each of the 2 query blocks, and after the last
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    wrapper.update_params(loss)
    assert torch.equal(model.backbone.blocks[3].attn.qkv.weight, before[0])
    assert not torch.equal(model.backbone.q.weight, before[1])


def test_coco_instance_inference_gives_scored_masks_at_the_image_size():
    """mmdet's MaskFormerFusionHead over EoMT's last prediction: top-k query-class
    pairs with masks, boxes and scores, at each image's size."""
    _, model = build(os.path.join(REPO, 'configs/eomt/eomt-l-dinov3_640x640_12e_coco-instance.py'))
    model.data_preprocessor.pad_size_divisor = 32
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(det_batch(), False), mode='predict')
    for result, size in zip(results, [(64, 96), (80, 70)]):
        pred = result.pred_instances
        assert len(pred) == 100 and pred.masks.shape[-2:] == size
        assert pred.bboxes.shape == (100, 4) and (pred.scores >= 0).all()
        assert int(pred.labels.max()) < 80


def test_semantic_inference_sums_class_times_mask_probabilities():
    """Per pixel, sum over queries of p(class) * sigmoid(mask): the probabilities of
    the classes plus no object add to one per query, so the scores lie in [0, Q]."""
    _, model = build(os.path.join(REPO, 'configs/eomt/eomt-s-dinov3_512x512_16e_ade20k.py'))
    model.eval()
    data = model.data_preprocessor(seg_batch(num_classes=150, size=48), False)
    with torch.no_grad():
        scores = model(**data, mode='tensor')
        out = model.backbone(data['inputs'])
    assert scores.shape == (2, 150, 48, 48)
    masks = torch.nn.functional.interpolate(out.mask_logits[-1], size=(48, 48),
                                            mode='bilinear').sigmoid()
    expected = torch.einsum('bqc,bqhw->bchw', out.class_logits[-1].softmax(-1)[..., :-1], masks)
    torch.testing.assert_close(scores, expected)


def test_a_head_refuses_another_backbone_and_other_classes():
    from mmvitpe.models.eomt import EoMTSegHead
    head = EoMTSegHead(num_classes=4)
    with pytest.raises(TypeError, match="reads the predictions of the EoMT backbone"):
        head.predict([torch.zeros(1, 4, 8, 8)], [{}])
    _, model = build(os.path.join(REPO, 'configs/eomt/eomt-s-dinov3_512x512_16e_ade20k.py'))
    with pytest.raises(ValueError, match='num_classes=4 but the backbone predicts 150'):
        head.predict(model.backbone.eval()(torch.randn(1, 3, 32, 32)), [{}])
    with pytest.raises(ValueError, match='loss num_classes=3 but the head has num_classes=4'):
        EoMTSegHead(num_classes=4, loss=dict(type='mmvitpe.MaskClassificationLoss',
                                             num_classes=3))


def test_sliding_window_inference_covers_the_image():
    """The ADE20K configs' mmseg slide mode: windows of the crop size over a larger
    image, each scored by the head at the window's size, averaged where they overlap."""
    cfg, model = build(os.path.join(REPO, 'configs/eomt/eomt-s-dinov3_512x512_16e_ade20k.py'))
    model.test_cfg.update(crop_size=(64, 64), stride=(42, 42))
    model.eval()
    batch = seg_batch(num_classes=150, size=64)
    batch['inputs'] = [torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)] * 2
    for sample in batch['data_samples']:
        sample.set_metainfo(dict(img_shape=(96, 128), ori_shape=(96, 128), pad_shape=(96, 128)))
    with torch.no_grad():
        results = model(**model.data_preprocessor(batch, False), mode='predict')
    assert [tuple(r.seg_logits.data.shape) for r in results] == [(150, 96, 128)] * 2
    assert all(r.pred_sem_seg.data.max() < 150 for r in results)
