"""Every shipped config loads and builds its model; PE variants are what they say."""
import glob
import os

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p)
SUFFIX_TO_SCHEME = {
    'none': 'NoPE', 'factorized': 'FactorizedPE', 'sincos': 'SinCosPE', 'peg': 'PEG',
    'rpb': 'RelPosBias', 'spsa': 'SPSA', 'lape': 'LaPE', 'pvg': 'PVG', 'mpvg': 'MPVG',
    'rope-axial': 'RoPEAxial', 'rope-mixed': 'RoPEMixed', 'rope-dinov3': 'RoPEDINOv3',
    'rope-eva02': 'RoPEEVA02', 'alibi': 'ALiBi2D', 'lookhere': 'LookHere',
    'beit': 'BEiTPE', 'rope-axial-ape': 'RoPEAxialAPE', 'rope-mixed-ape': 'RoPEMixedAPE',
    'spvit': 'SPViTPE', 'eva02': 'EVA02PE',
}


def scheme_in_name(path):
    name = os.path.basename(path)
    for suffix, scheme in SUFFIX_TO_SCHEME.items():
        if f'vit-adapter-t-{suffix}_' in name:
            return scheme
    return 'LearnedPE'


def test_there_is_a_variant_per_scheme_for_both_tasks():
    from mmvitpe.registry import POS_ENCODINGS
    schemes = set(POS_ENCODINGS.module_dict)
    for task in ('mask-rcnn', 'upernet'):
        found = {scheme_in_name(p) for p in CONFIGS if os.path.basename(p).startswith(task)}
        assert found == schemes, (task, schemes - found)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: os.path.relpath(p, REPO))
def test_config_loads_and_builds(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports.imports == ['mmvitpe']
    backbone = cfg.model.backbone
    assert backbone.type == 'mmvitpe.ViTAdapter'
    assert backbone.pos_embed.type == scheme_in_name(path)
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS']).MODELS
    model = registry.build(cfg.model)  # init_cfg is honoured by init_weights(), not here
    assert type(model.backbone.pe).__name__ == backbone.pos_embed.type
    dims = {'tiny': 192, 'small': 384, 'base': 768}[backbone.preset]
    assert model.backbone.embed_dim == dims
    in_channels = (cfg.model.neck.in_channels if cfg.default_scope == 'mmdet'
                   else cfg.model.decode_head.in_channels)
    assert list(in_channels) == [dims] * 4
