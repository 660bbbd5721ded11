#!/usr/bin/env python
"""Golden fixture of detectron2's own ViTDet backbone: ``SimpleFeaturePyramid`` on ``ViT``.

No detectron2 code is copied here. At run time this script reads the upstream files
(github.com/facebookresearch/detectron2 at the pinned commit, from a bare git mirror
or a checkout), writes them UNMODIFIED into a temporary directory, imports them and
runs them:

* ``detectron2/modeling/backbone/vit.py``: ``ViT`` (ViTDet's plain backbone: absolute
  position embedding from a pretraining grid with a class slot, decomposed relative
  positions, window attention in some blocks) and ``SimpleFeaturePyramid``;
* ``detectron2/modeling/backbone/utils.py`` (``PatchEmbed``, ``get_abs_pos``,
  ``window_partition``/``window_unpartition``, ``get_rel_pos``,
  ``add_decomposed_rel_pos``), ``backbone.py`` (``Backbone``), ``fpn.py``
  (``LastLevelMaxPool``, ``_assert_strides_are_log2_contiguous``) and what ``fpn.py``
  imports at module level: ``build.py`` (the backbone registry) and ``resnet.py``;
* ``detectron2/layers/{shape_spec,wrappers,batch_norm,blocks,deform_conv}.py``
  (``ShapeSpec``, ``Conv2d``, ``get_norm``, the channel-first ``LayerNorm`` of
  ``norm='LN'``, ``CNNBlockBase``; ``DeformConv`` only because ``resnet.py`` imports
  it) and ``detectron2/utils/{__init__,env,comm,develop,registry}.py``, which those
  import.

What is substituted, and why:

* The packages ``detectron2``, ``detectron2.layers``, ``detectron2.modeling`` and
  ``detectron2.modeling.backbone`` get empty ``__init__.py`` files instead of
  upstream's: ``detectron2/layers/__init__.py`` imports the compiled ops (NMS,
  ROIAlign, ...) and ``detectron2/modeling/__init__.py`` the whole detector stack.
  The upstream modules import their names from the package
  (``from detectron2.layers import Conv2d, ...``), so after importing the upstream
  ``detectron2.layers`` submodules this script puts on the package the names that
  upstream's ``__init__`` takes from those same submodules (LAYERS_NAMES).
  ``deform_conv.py`` then finds no ``detectron2._C`` and, as upstream does without a
  build, defines dummy ``DeformConv`` classes; ViTDet never uses them.
* fvcore is not installed. Its modules are minimal stand-ins in ``sys.modules``
  (``stub_fvcore``): ``fvcore.nn.weight_init.c2_msra_fill``/``c2_xavier_fill`` (used
  by ``ResBottleneckBlock``, the FPN and ResNet constructors, none of which is built
  here) and ``fvcore.nn.distributed.differentiable_all_reduce`` (used by
  ``NaiveSyncBatchNorm`` in training) raise if called;
  ``fvcore.common.registry.Registry`` records what ``@register()`` decorates and
  returns it unchanged (``fpn.py`` and ``resnet.py`` register their builders at
  import). Nothing of fvcore takes part in the computation.
* ``Block`` takes ``Mlp`` (and ``DropPath``) from the installed timm
  (``timm.models.layers``), as upstream does: fc1, GELU, fc2 (keys ``mlp.fc1``,
  ``mlp.fc2``); the timm version is recorded in 'source'.

The model is small (width 64, depth 4, 2 heads, MLP ratio 2 so that the fixture
stays under 1.5 MB, patch 16) with ViTDet's options:
qkv bias, LayerNorm eps 1e-6, absolute positions from a 64 x 64 pretraining image
(4 x 4 grid + class slot), relative positions (random, not zero), window size 3 in
blocks 0 and 2, blocks 1 and 3 global; SimpleFeaturePyramid with scales
(4, 2, 1, 0.5), 32 channels, norm 'LN' and LastLevelMaxPool. Every parameter is
randomised deterministically (``upstream.randomize``, seed 0), the model is put in
eval() mode and run, float32 on the CPU, on one non-square image (1, 3, 96, 128):
a 6 x 8 patch grid, so the abs-pos table is resized from 4 x 4, the global blocks'
rel-pos tables (sized for the 4 x 4 grid of img_size=64) are resized to 11 and 15
entries, and the 3 x 3 windows pad the grid to 6 x 9. Besides, two standalone calls
of ``add_decomposed_rel_pos`` with random inputs: q and k both 3 x 5 (the width
table has 7 entries, not 9, so ``get_rel_pos`` resizes it), and q 4 x 6 with k 2 x 3
(coordinates scaled; width table 9 entries, not 11).

Output (``torch.load(path, weights_only=True)``):
tests/fixtures/golden/vitdet.pt with 'state_dict' (SimpleFeaturePyramid's own keys:
``net.*`` for the ViT, ``simfp_2.*`` .. ``simfp_5.*``), 'img', 'outs' (dict p2..p6,
strides 4..64, in this order), 'vit_out' (the ViT's 'last_feat', (1, 64, 6, 8)),
'rel_pos_cases' (list of dicts: attn, q, rel_pos_h, rel_pos_w, q_size, k_size, out),
'config', 'notes', 'source' (repo, commit, sha256 of every upstream file used, timm
version).

Regenerate:

    /root/.cache/mmvitpe/venv/bin/python tools/golden/make_vitdet_fixtures.py \\
        /work/.mirror/facebookresearch+detectron2/repo --out tests/fixtures/golden
"""
import importlib
import os
import sys
import tempfile
import types
from functools import partial

import timm
import torch
from torch import nn

from upstream import parse_args, randomize, save_fixture, write_upstream

EXPECTED_COMMIT = '02b5c4e295e990042a714712c21dc79b731e8833'
REPO_URL = 'https://github.com/facebookresearch/detectron2'
PACKAGES = ['detectron2', 'detectron2/layers', 'detectron2/modeling',
            'detectron2/modeling/backbone']
UPSTREAM_FILES = ['detectron2/modeling/backbone/vit.py',
                  'detectron2/modeling/backbone/utils.py',
                  'detectron2/modeling/backbone/backbone.py',
                  'detectron2/modeling/backbone/fpn.py',
                  'detectron2/modeling/backbone/build.py',
                  'detectron2/modeling/backbone/resnet.py',
                  'detectron2/layers/shape_spec.py',
                  'detectron2/layers/wrappers.py',
                  'detectron2/layers/batch_norm.py',
                  'detectron2/layers/blocks.py',
                  'detectron2/layers/deform_conv.py',
                  'detectron2/utils/__init__.py',
                  'detectron2/utils/env.py',
                  'detectron2/utils/comm.py',
                  'detectron2/utils/develop.py',
                  'detectron2/utils/registry.py']
# What upstream's detectron2/layers/__init__.py imports from the modules above and
# the backbone modules take from the package.
LAYERS_NAMES = {'shape_spec': ['ShapeSpec'], 'wrappers': ['Conv2d'],
                'batch_norm': ['get_norm'], 'blocks': ['CNNBlockBase'],
                'deform_conv': ['DeformConv', 'ModulatedDeformConv']}
VIT = dict(img_size=64, patch_size=16, in_chans=3, embed_dim=64, depth=4, num_heads=2,
           mlp_ratio=2, qkv_bias=True, drop_path_rate=0.0, use_abs_pos=True,
           use_rel_pos=True, rel_pos_zero_init=False, window_size=3,
           window_block_indexes=[0, 2], residual_block_indexes=[],
           use_act_checkpoint=False, pretrain_img_size=64, pretrain_use_cls_token=True,
           out_feature='last_feat')
VIT_LAYERS = dict(norm_layer='partial(nn.LayerNorm, eps=1e-6)', act_layer='nn.GELU')
SFP = dict(in_feature='last_feat', out_channels=32, scale_factors=(4.0, 2.0, 1.0, 0.5),
           norm='LN', square_pad=0)
SFP_LAYERS = dict(top_block='LastLevelMaxPool()')
IMAGE = (1, 3, 96, 128)
# (q_size, k_size, len(rel_pos_h), len(rel_pos_w)); B (batch x heads) 2, width 8.
REL_POS_CASES = [((3, 5), (3, 5), 5, 7), ((4, 6), (2, 3), 7, 9)]


def stub_fvcore() -> None:
    """The fvcore modules the upstream files import, as minimal stand-ins."""
    def unused(name):
        def fail(*args, **kwargs):
            raise NotImplementedError(f'fvcore stand-in: {name} is not used by this fixture')
        return fail

    class Registry:
        """fvcore.common.registry.Registry as far as imports use it: @register()."""

        def __init__(self, name):
            self._name, self._obj_map = name, {}

        def register(self, obj=None):
            def deco(o):
                self._obj_map[o.__name__] = o
                return o
            return deco if obj is None else deco(obj)

    contents = {'fvcore': {}, 'fvcore.nn': {}, 'fvcore.common': {},
                'fvcore.nn.weight_init': {n: unused(n) for n in ('c2_msra_fill',
                                                                 'c2_xavier_fill')},
                'fvcore.nn.distributed': {'differentiable_all_reduce':
                                          unused('differentiable_all_reduce')},
                'fvcore.common.registry': {'Registry': Registry}}
    for name, attrs in contents.items():
        module = types.ModuleType(name, 'stand-in (tools/golden/make_vitdet_fixtures.py)')
        module.__dict__.update(attrs)
        sys.modules[name] = module
        parent, _, child = name.rpartition('.')
        if parent:
            setattr(sys.modules[parent], child, module)


def main() -> None:
    args, commit = parse_args(__doc__, 'facebookresearch/detectron2', EXPECTED_COMMIT)
    with tempfile.TemporaryDirectory() as tmp:
        for package in PACKAGES:
            os.makedirs(os.path.join(tmp, package), exist_ok=True)
            open(os.path.join(tmp, package, '__init__.py'), 'w').close()
        digests = write_upstream(args.repo, commit, UPSTREAM_FILES, tmp)
        sys.path.insert(0, tmp)
        stub_fvcore()
        layers = importlib.import_module('detectron2.layers')
        for module_name, names in LAYERS_NAMES.items():
            module = importlib.import_module(f'detectron2.layers.{module_name}')
            for name in names:
                setattr(layers, name, getattr(module, name))
        vit_module = importlib.import_module('detectron2.modeling.backbone.vit')
        fpn = importlib.import_module('detectron2.modeling.backbone.fpn')
        utils = importlib.import_module('detectron2.modeling.backbone.utils')
        vit = vit_module.ViT(**VIT, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                             act_layer=nn.GELU)
        model = vit_module.SimpleFeaturePyramid(net=vit, top_block=fpn.LastLevelMaxPool(),
                                                **SFP)
        randomize(model, seed=0)
        model.eval()
        img = torch.randn(IMAGE, generator=torch.Generator().manual_seed(1))
        gen = torch.Generator().manual_seed(2)
        rel_pos_cases = []
        with torch.no_grad():
            outs = model(img)
            vit_out = model.net(img)['last_feat']
            for q_size, k_size, len_h, len_w in REL_POS_CASES:
                case = dict(
                    attn=torch.randn(2, q_size[0] * q_size[1], k_size[0] * k_size[1],
                                     generator=gen),
                    q=torch.randn(2, q_size[0] * q_size[1], 8, generator=gen),
                    rel_pos_h=torch.randn(len_h, 8, generator=gen),
                    rel_pos_w=torch.randn(len_w, 8, generator=gen),
                    q_size=q_size, k_size=k_size)
                case['out'] = utils.add_decomposed_rel_pos(
                    case['attn'], case['q'], case['rel_pos_h'], case['rel_pos_w'],
                    q_size, k_size)
                rel_pos_cases.append(case)
    assert list(outs) == ['p2', 'p3', 'p4', 'p5', 'p6'], list(outs)
    result = {
        'state_dict': {k: v.detach().clone() for k, v in model.state_dict().items()},
        'img': img,
        'outs': dict(outs),
        'vit_out': vit_out,
        'rel_pos_cases': rel_pos_cases,
        'config': dict(vit=dict(VIT, **VIT_LAYERS), sfp=dict(SFP, **SFP_LAYERS),
                       image=IMAGE, rel_pos_cases=REL_POS_CASES),
        'notes': ('detectron2 ViTDet: SimpleFeaturePyramid(ViT) with LastLevelMaxPool, '
                  'upstream code run unmodified (fvcore stubbed, unused); float32, CPU, '
                  'eval mode, randomised weights incl. rel-pos tables; 96 x 128 input '
                  '(6 x 8 patches: abs pos resized bicubically from 4 x 4, 3 x 3 windows '
                  'padded, global blocks\' rel-pos tables resized from 7 entries). '
                  'rel_pos_cases: add_decomposed_rel_pos(attn, q, rel_pos_h, rel_pos_w, '
                  'q_size, k_size) -> out, tables of other lengths than 2 * max(q, k) - 1 '
                  'where noted in config.'),
        'source': dict(repo=REPO_URL, commit=commit, files=digests,
                       timm=timm.__version__),
    }
    save_fixture(result, args.out, 'vitdet.pt', commit, EXPECTED_COMMIT)


if __name__ == '__main__':
    main()
