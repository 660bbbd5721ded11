"""Helpers shared by the test modules (import them from here, not from conftest)."""
import glob
import json
import os
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')

# ---- the demo configs, shrunk for CPU runs ------------------------------------------------
DET = 'configs/demo/mask-rcnn_vit-adapter-t-mpvg_fpn_demo.py'
SEG = 'configs/demo/upernet_vit-adapter-t-mpvg_demo.py'
TINY_BACKBONE = ['model.backbone.embed_dim=64', 'model.backbone.num_heads=4',
                 'model.backbone.depth=4', 'model.backbone.deform_num_heads=4',
                 'model.backbone.conv_inplane=16',
                 'model.backbone.interaction_indexes=[[0,0],[1,1],[2,2],[3,3]]']


def det_options(data, epochs=2):
    coco = f'{data}/coco/'
    return TINY_BACKBONE + [
        'model.backbone.init_cfg=None',  # the demo starts from the seg demo's backbone
        'model.backbone.window_block_indexes=[0,2]', 'model.neck.in_channels=[64,64,64,64]',
        f'train_dataloader.dataset.data_root={coco}', f'val_dataloader.dataset.data_root={coco}',
        f'test_dataloader.dataset.data_root={coco}',
        f'val_evaluator.ann_file={coco}annotations/instances_val.json',
        f'test_evaluator.ann_file={coco}annotations/instances_val.json',
        f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
        f'default_hooks.checkpoint.interval={epochs}', 'default_hooks.logger.interval=1']


def seg_options(data, iters=8, checkpoint_every=None):
    ade = f'{data}/ade/'
    return TINY_BACKBONE + ['optim_wrapper.optimizer.lr=1e-3', 'param_scheduler.0.end=2',
                            'default_hooks.checkpoint.max_keep_ckpts=-1',
        'model.decode_head.in_channels=[64,64,64,64]', 'model.auxiliary_head.in_channels=64',
        f'train_dataloader.dataset.data_root={ade}', f'val_dataloader.dataset.data_root={ade}',
        f'test_dataloader.dataset.data_root={ade}', f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={iters}',
        f'default_hooks.checkpoint.interval={checkpoint_every or iters}',
        'default_hooks.logger.interval=1']


def run(args, timeout=600, **kw):
    """Run a command in the repository; fail the test with its output's tail unless it succeeds."""
    out = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout, **kw)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    return out


def train_cmd(config, work_dir, options, launcher=(sys.executable, 'tools/train.py')):
    return [*launcher, config, '--work-dir', str(work_dir), '--cfg-options', *options]


def logged(work_dir, key):
    """Values of a scalar logged during training, in order."""
    files = glob.glob(f'{work_dir}/*/vis_data/scalars.json')
    assert files, f'no scalars logged under {work_dir}'
    rows = [json.loads(line) for line in open(sorted(files)[-1])]
    return [r[key] for r in rows if key in r]


# ---- checkpoint files -----------------------------------------------------------------------
class RunsCode:
    """Unpickling this runs code: it creates the file ``path`` (through ``exec``, no shell).
    A loader that refuses it leaves ``path`` absent."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f'open({self.path!r}, "w").close()',))


def write_truncated_checkpoint(path):
    """(Over)write ``path`` with the first half of a real checkpoint file."""
    torch.save({'w': torch.zeros(1000)}, path)
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 2])


# ---- tiny models ----------------------------------------------------------------------------
def tiny_vit(**kw):
    """A 2-block PEViT of width 32 on a 4x4 pretraining grid."""
    from mmvitpe.models import PEViT
    return PEViT(**{**dict(embed_dim=32, depth=2, num_heads=4, pretrain_size=64), **kw})


def tiny_vit_with_pe(name, **pe_args):
    """tiny_vit with the positional encoding ``name``."""
    return tiny_vit(pos_embed=dict(type=name, **pe_args))


def tiny_adapter(**kw):
    """A 2-block ViTAdapter of width 32, one interaction per block."""
    from mmvitpe.models import ViTAdapter
    return ViTAdapter(**{**dict(embed_dim=32, depth=2, num_heads=2, deform_num_heads=2,
                                conv_inplane=8, n_points=2, interaction_indexes=[[0, 0], [1, 1]],
                                pretrain_size=64), **kw})


def rotate_head_major(pe, q, k, block, state):
    """``pe.rotate`` for q, k given (and returned) as (B, heads, N, head_dim)."""
    qk = pe.rotate(torch.stack([q, k], 2).transpose(1, 3), block, state)
    return qk.transpose(1, 3).unbind(2)


def perturbed(model):
    """``model`` moved off its neutral init (zero biases, tiny layer scales)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def seg_batch(num_classes: int, size: int = 64, batch: int = 2) -> dict:
    """An mmseg batch as its data preprocessor takes it: uint8 images with random
    label maps of ``num_classes`` classes."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(batch):
        sample = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                             pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, size, size)))
        samples.append(sample)
    return dict(inputs=[torch.randint(0, 255, (3, size, size), dtype=torch.uint8)] * batch,
                data_samples=samples)
