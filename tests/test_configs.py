"""Every shipped config loads and builds its model; PE variants are what they say."""
import glob
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from helpers import seg_batch
from mmvitpe.models.vit import ARCH_SETTINGS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p)
SUFFIX_TO_SCHEME = {
    'none': 'NoPE', 'factorized': 'FactorizedPE', 'sincos': 'SinCosPE', 'peg': 'PEG',
    'rpb': 'RelPosBias', 'spsa': 'SPSA', 'lape': 'LaPE', 'pvg': 'PVG', 'mpvg': 'MPVG',
    'rope-axial': 'RoPEAxial', 'rope-mixed': 'RoPEMixed', 'rope-dinov3': 'RoPEDINOv3',
    'rope-eva02': 'RoPEEVA02', 'alibi': 'ALiBi2D', 'lookhere': 'LookHere',
    'beit': 'BEiTPE', 'rope-axial-ape': 'RoPEAxialAPE', 'rope-mixed-ape': 'RoPEMixedAPE',
    'spvit': 'SPViTPE', 'eva02': 'EVA02PE', 'relpos-decomposed': 'RelPosDecomposed',
}


# configs/foundation: vit-adapter-<size>-<family>[-frozen]_...
FAMILY_TO_SCHEME = {'dinov2': 'LearnedPE', 'dinov3': 'RoPEDINOv3', 'eva02': 'EVA02PE'}
FOUNDATION = [p for p in CONFIGS if os.sep + 'foundation' + os.sep in p]


def scheme_in_name(path):
    name = os.path.basename(path)
    for suffix, scheme in SUFFIX_TO_SCHEME.items():
        if f'vit-adapter-t-{suffix}_' in name:
            return scheme
    for family, scheme in FAMILY_TO_SCHEME.items():
        if f'-{family}_' in name or f'-{family}-' in name:
            return scheme
    return 'ViTDetPE' if '_vitdet-' in name else 'LearnedPE'  # each protocol's own PE


def test_there_is_a_variant_per_scheme_for_both_tasks():
    from mmvitpe.registry import POS_ENCODINGS
    schemes = set(POS_ENCODINGS.module_dict)
    for task in ('mask-rcnn', 'upernet'):
        found = {scheme_in_name(p) for p in CONFIGS if os.path.basename(p).startswith(task)}
        assert found == schemes, (task, schemes - found)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: os.path.relpath(p, REPO))
def test_config_loads_and_builds(path):
    cfg = Config.fromfile(path)
    assert 'mmvitpe' in cfg.custom_imports.imports  # Mask2Former's also import mmdet.models
    backbone = cfg.model.backbone
    assert backbone.type in ('mmvitpe.ViTAdapter', 'mmvitpe.DINOv3Adapter',
                             'mmvitpe.ViTBaseline', 'mmvitpe.ViTDet', 'mmvitpe.STA',
                             'mmvitpe.EoMT')
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    # init_cfg is honoured by init_weights(), not here; on the meta device the
    # constructors run without allocating (ViT-Adapter-L: 300M parameters)
    with torch.device('meta'):
        model = registry.build(cfg.model)
    assert type(model.backbone.pe).__name__ == scheme_in_name(path)
    arch = backbone.get('arch', {'tiny': 'tiny', 'small': 'small', 'base': 'base',
                                 'large': 'large'}.get(backbone.get('preset')))
    if arch is not None:  # what the config says the width is (a preset's, an arch's)
        dims = arch['embed_dim'] if isinstance(arch, dict) else ARCH_SETTINGS[arch]['embed_dim']
        assert model.backbone.embed_dim == dims
    if backbone.type == 'mmvitpe.EoMT':  # no pyramid: the head reads its predictions
        head = model.decode_head if cfg.default_scope == 'mmseg' else model.panoptic_head
        assert head.num_classes == model.backbone.num_classes
        return
    # what the neck or head takes is what the backbone declares it gives
    declared = [s['channels'] for s in model.backbone.output_shape().values()]
    if cfg.default_scope == 'mmdet':
        in_channels = cfg.model.neck.get('in_channels', declared)
    else:
        in_channels = cfg.model.decode_head.in_channels
    if isinstance(in_channels, int):  # a head that reads one level (the position demos)
        assert in_channels == declared[cfg.model.decode_head.in_index]
        return
    assert list(in_channels) == declared


TINY_BACKBONE = dict(embed_dim=32, num_heads=2, depth=4, deform_num_heads=2, conv_inplane=8,
                     interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]], init_cfg=None)


def tiny_training_batch(scope: str) -> dict:
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        return demo_mm_inputs(2, [[3, 64, 96], [3, 80, 70]], num_classes=80, with_mask=True)
    return seg_batch(num_classes=150)


@pytest.mark.parametrize('path', FOUNDATION, ids=lambda p: os.path.basename(p))
def test_foundation_config_trains_one_step_at_a_tiny_size(path):
    """The config's own model, data preprocessor and optimizer (layer decay, protocol
    2's frozen ViT) at a tiny width and depth: one step changes the adapter only
    where the ViT is frozen."""
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(path)
    backbone = dict(TINY_BACKBONE)
    if cfg.model.backbone.get('window_block_indexes'):
        backbone['window_block_indexes'] = [0, 2]
    cfg.model.backbone.update(backbone)
    if cfg.optim_wrapper.paramwise_cfg.get('num_layers'):
        cfg.optim_wrapper.paramwise_cfg.num_layers = 4
    if cfg.default_scope == 'mmdet':
        cfg.model.neck.in_channels = [32] * 4
    elif cfg.model.decode_head.type == 'Mask2FormerHead':  # its own widths are small enough
        cfg.model.data_preprocessor.size = (64, 64)
        cfg.model.decode_head.in_channels = [32] * 4
    else:
        cfg.model.data_preprocessor.size = (64, 64)
        cfg.model.decode_head.update(in_channels=[32] * 4, channels=16)
        cfg.model.auxiliary_head.update(in_channels=32, channels=8)
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    model = revert_sync_batchnorm(registry.build(cfg.model)).train()
    assert type(model.backbone.pe).__name__ == scheme_in_name(path)
    # what the width and depth leave as the config says: DINOv2 converted to 16-px
    # patches with its 37x37 table, DINOv3 with its class + 4 storage tokens
    family = next(f for f in FAMILY_TO_SCHEME if f'-{f}' in os.path.basename(path))
    assert (model.backbone.patch_size, model.backbone.pretrain_grid,
            model.backbone.num_prefix_tokens) == {
        'dinov2': (16, (37, 37), 0), 'dinov3': (16, (16, 16), 5), 'eva02': (14, (16, 16), 0)
    }[family]
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    vit_weight, adapter_weight = (model.backbone.blocks[0].attn.qkv.weight,
                                  model.backbone.spm.fc1.weight)
    before = vit_weight.detach().clone(), adapter_weight.detach().clone()
    data = model.data_preprocessor(tiny_training_batch(cfg.default_scope), True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    assert torch.isfinite(loss)
    wrapper.update_params(loss)
    assert not torch.equal(adapter_weight, before[1])
    assert torch.equal(vit_weight, before[0]) == model.backbone.freeze_vit
