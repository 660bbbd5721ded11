"""The environment and the OpenMMLab integration the rest builds on."""
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.utils import get_installed_path

import mmvitpe
from helpers import RunsCode, seg_batch
from mmvitpe.utils.safe_load import allow_mmengine_checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_VIT = dict(type='mmvitpe.PEViT', embed_dim=32, depth=2, num_heads=4, patch_size=8,
                pos_embed=dict(type='LaPE'))


def upstream_config(package, path):
    return Config.fromfile(os.path.join(get_installed_path(package), '.mim', 'configs', path))


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmengine'])
def test_scoped_type_resolves_in_every_default_scope(scope):
    registry = {
        'mmdet': lambda: __import__('mmdet.registry', fromlist=['MODELS']).MODELS,
        'mmseg': lambda: __import__('mmseg.registry', fromlist=['MODELS']).MODELS,
        'mmengine': lambda: __import__('mmengine.registry', fromlist=['MODELS']).MODELS,
    }[scope]()
    init_default_scope(scope)
    model = registry.build(TINY_VIT)
    # the PE sub-module is built inside the backbone, under the same scope
    assert type(model).__name__ == 'PEViT' and type(model.pe).__name__ == 'LaPE'
    assert model(torch.randn(1, 3, 40, 24))[0].shape == (1, 32, 5, 3)  # the last block's map


def test_names_do_not_collide_with_mmdet_or_mmseg():
    import mmdet.registry
    import mmseg.registry
    from mmdet.utils import register_all_modules as det_all
    from mmseg.utils import register_all_modules as seg_all
    det_all(False)
    seg_all(False)
    ours = set(mmvitpe.MODELS.module_dict)
    assert ours, 'nothing registered'
    assert not ours & set(mmdet.registry.MODELS.module_dict)
    assert not ours & set(mmseg.registry.MODELS.module_dict)


@pytest.mark.parametrize('scope,custom_imports', [('mmdet', True), ('mmseg', True),
                                                  ('mmdet', False)])
def test_fresh_process_resolves_through_custom_imports_or_scope(tmp_path, scope,
                                                                custom_imports):
    """As upstream tools/train.py does it: nothing imports mmvitpe but the config."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(textwrap.dedent(f'''
        default_scope = '{scope}'
        model = {TINY_VIT!r}
        ''') + ("custom_imports = dict(imports=['mmvitpe'], allow_failed_imports=False)\n"
                if custom_imports else ''))
    code = textwrap.dedent(f'''
        import sys
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        cfg = Config.fromfile({str(cfg)!r})
        assert ('mmvitpe' in sys.modules) == {custom_imports}
        init_default_scope(cfg.default_scope)
        from {scope}.registry import MODELS
        print(type(MODELS.build(cfg.model)).__name__)
        ''')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith('PEViT')


def test_mmcv_cpu_ops_are_compiled_and_correct():
    import mmcv
    from mmcv.ops import RoIAlign, nms
    from torchvision.ops import roi_align
    assert mmcv.__version__ == '2.1.0'
    import mmcv._ext  # noqa: F401  (the compiled ops)
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=torch.float)
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    feats = torch.randn(2, 4, 16, 16)
    rois = torch.tensor([[0, 1.5, 2.0, 9.0, 12.5], [1, 0.0, 0.0, 15.0, 15.0]])
    ours = RoIAlign((5, 5), spatial_scale=1.0, sampling_ratio=2, aligned=True)(feats, rois)
    ref = roi_align(feats, rois, (5, 5), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


def test_mmcv_multiscale_deformable_attention_forward_backward():
    from mmcv.ops import MultiScaleDeformableAttention
    from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch
    attn = MultiScaleDeformableAttention(embed_dims=32, num_heads=4, num_levels=2,
                                         num_points=2, batch_first=True)
    shapes = torch.tensor([[6, 8], [3, 4]])
    starts = torch.tensor([0, 48])
    value = torch.randn(2, 60, 32, requires_grad=True)
    query = torch.randn(2, 10, 32, requires_grad=True)
    ref_points = torch.rand(2, 10, 2, 2)
    out = attn(query, value=value, reference_points=ref_points, spatial_shapes=shapes,
               level_start_index=starts)
    assert out.shape == (2, 10, 32)
    out.square().sum().backward()
    assert value.grad.abs().sum() > 0 and query.grad.abs().sum() > 0
    # the CPU path's core is differentiable w.r.t. sampling locations too
    v = torch.randn(1, 12, 2, 4, dtype=torch.double, requires_grad=True)
    loc = torch.rand(1, 3, 2, 1, 2, 2, dtype=torch.double, requires_grad=True)
    w = torch.rand(1, 3, 2, 1, 2, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v, loc, w: multi_scale_deformable_attn_pytorch(v, torch.tensor([[3, 4]]), loc, w),
        (v, loc, w))


def test_upstream_mask_rcnn_losses_and_predictions_on_cpu():
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    cfg = upstream_config('mmdet', 'mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py').model
    cfg.backbone.update(depth=18, init_cfg=None)
    cfg.neck.in_channels = [64, 128, 256, 512]
    detector = MODELS.build(cfg)
    data = detector.data_preprocessor(
        demo_mm_inputs(2, [[3, 128, 128], [3, 125, 130]], num_classes=80, with_mask=True), True)
    losses = detector(**data, mode='loss')
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(losses)
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(v) for v in losses.values())
    assert torch.isfinite(total) and total > 0
    detector.eval()
    with torch.no_grad():
        results = detector(**detector.data_preprocessor(
            demo_mm_inputs(1, [[3, 128, 128]], with_mask=True), False), mode='predict')
    assert hasattr(results[0].pred_instances, 'masks')


def test_upstream_upernet_losses_and_predictions_on_cpu():
    from mmengine.model.utils import revert_sync_batchnorm
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    cfg = upstream_config('mmseg', 'upernet/upernet_r50_4xb2-40k_cityscapes-512x1024.py').model
    cfg.pretrained = None
    cfg.backbone.depth = 18
    cfg.decode_head.update(in_channels=[64, 128, 256, 512], channels=32, num_classes=5)
    cfg.auxiliary_head.update(in_channels=256, channels=16, num_classes=5)
    cfg.data_preprocessor.size = (64, 64)
    segmentor = revert_sync_batchnorm(MODELS.build(cfg))
    data = segmentor.data_preprocessor(seg_batch(num_classes=5), True)
    losses = segmentor(**data, mode='loss')
    assert torch.isfinite(losses['decode.loss_ce']) and losses['decode.loss_ce'] > 0
    segmentor.eval()
    with torch.no_grad():
        pred = segmentor(**data, mode='predict')
    assert pred[0].pred_sem_seg.data.shape == (1, 64, 64)


# ---- checkpoint loading policy (torch >= 2.6) -----------------------------------
def _train_and_checkpoint(work_dir, max_epochs, resume=False):
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Regressor(BaseModel):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(2, 1)

        def forward(self, x, y, mode='loss'):
            loss = ((self.fc(torch.stack(x)) - torch.stack(y)) ** 2).mean()
            return dict(loss=loss) if mode == 'loss' else [loss]

    class Points(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return dict(x=torch.tensor([i, 1.0]), y=torch.tensor([2.0 * i]))

    runner = Runner(
        model=Regressor(), work_dir=str(work_dir), resume=resume,
        train_dataloader=dict(dataset=Points(), batch_size=4, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=True)),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        randomness=dict(seed=0), default_scope='mmengine')
    runner.train()
    return runner


def test_mmengine_checkpoints_resume_with_safe_loading(tmp_path):
    _train_and_checkpoint(tmp_path, max_epochs=1)
    ckpt = str(tmp_path / 'epoch_1.pth')
    # without the policy, torch >= 2.6 refuses mmengine's own checkpoint
    torch.serialization.clear_safe_globals()
    try:
        needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(ckpt))
        with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
            torch.load(ckpt)
    finally:
        allow_mmengine_checkpoints()
    assert {'mmengine.logging.history_buffer.HistoryBuffer', 'builtins.getattr'} <= needed
    assert torch.load(ckpt)['meta']['epoch'] == 1
    first_epoch_written = os.stat(ckpt).st_mtime_ns
    runner = _train_and_checkpoint(tmp_path, max_epochs=2, resume=True)
    # resumed, not restarted: epoch 1 is not trained (nor saved) again
    assert os.stat(ckpt).st_mtime_ns == first_epoch_written
    assert runner.iter == 4 and (tmp_path / 'epoch_2.pth').exists()


def test_pickles_carrying_code_are_still_refused(tmp_path):
    path, ran = tmp_path / 'evil.pth', tmp_path / 'payload_ran'
    torch.save({'state_dict': {}, 'payload': RunsCode(ran)}, str(path))
    with pytest.raises(pickle.UnpicklingError,
                       match=r'Unsupported global: GLOBAL (builtins\.)?exec\b'):
        torch.load(str(path))
    assert not ran.exists()
    # getattr is served by a stand-in that only resolves HistoryBuffer statistics
    from mmengine.logging.history_buffer import HistoryBuffer
    from mmvitpe.utils.safe_load import history_buffer_method
    assert history_buffer_method(HistoryBuffer, 'mean') is HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError, match='refusing getattr'):
        history_buffer_method(np.ndarray, 'tofile')
