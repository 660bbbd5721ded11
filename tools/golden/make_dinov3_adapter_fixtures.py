#!/usr/bin/env python
"""Golden fixture of DINOv3's own ``DINOv3_Adapter`` on its own ViT (protocol 2).

No DINOv3 code is copied here. At run time this script reads the upstream files
(github.com/facebookresearch/dinov3 at the pinned commit, from a bare git mirror or
a checkout), writes them UNMODIFIED into a temporary directory, imports them and
runs them:

* ``dinov3/layers/*``, ``dinov3/utils/*`` and ``dinov3/models/vision_transformer.py``:
  ``DinoVisionTransformer`` with the released ViT-S/16's options (RoPE base 100,
  'separate' coords, fp32 periods, 4 storage tokens, layer scale, LayerNorm eps
  1e-5, qkv bias with the k part masked), reduced to width 64, depth 4, 2 heads;
* ``dinov3/eval/segmentation/models/backbone/dinov3_adapter.py`` and
  ``.../models/utils/ms_deform_attn.py``: ``DINOv3_Adapter`` (its deformable
  attention runs its pure-PyTorch forward; no compiled op is needed in eval).

The packages ``dinov3``, ``dinov3.models``, ``dinov3.eval``, ... get empty
``__init__.py`` files instead of upstream's, which import the training stack
(heads, data, distributed); ``torch.nn.SyncBatchNorm`` is ``BatchNorm2d`` while
the adapter is constructed (one CPU process; in eval mode the math and the keys
are the same). DINOv3_Adapter runs its ViT under ``torch.autocast("cuda")``,
which is off on a CPU: the fixture is float32 throughout.

Every parameter and buffer is randomised deterministically, the model is put in
eval() mode and run on one non-square image (1, 3, 96, 128).

Output (``torch.load(path, weights_only=True)``):
tests/fixtures/golden/dinov3_adapter.pt with 'state_dict' (DINOv3_Adapter's own
keys: ``backbone.*`` for the ViT), 'img', 'outs' (4 maps, strides 4..32),
'config', 'notes', 'source' (repo, commit, sha256 of every file used).

Regenerate:

    /root/.cache/mmvitpe/venv/bin/python tools/golden/make_dinov3_adapter_fixtures.py \\
        /work/.mirror/facebookresearch+dinov3/repo --out tests/fixtures/golden
"""
import importlib
import os
import sys
import tempfile

import torch
from torch import nn

from upstream import parse_args, python_files, randomize, save_fixture, write_upstream

EXPECTED_COMMIT = '6876159a11b4df116f30f667f8c9888617df0751'
REPO_URL = 'https://github.com/facebookresearch/dinov3'
PACKAGES = ['dinov3', 'dinov3/models', 'dinov3/eval', 'dinov3/eval/segmentation',
            'dinov3/eval/segmentation/models', 'dinov3/eval/segmentation/models/backbone',
            'dinov3/eval/segmentation/models/utils']
UPSTREAM_DIRS = ['dinov3/layers', 'dinov3/utils']
UPSTREAM_FILES = ['dinov3/models/vision_transformer.py',
                  'dinov3/eval/segmentation/models/backbone/dinov3_adapter.py',
                  'dinov3/eval/segmentation/models/utils/ms_deform_attn.py']
VIT = dict(img_size=64, patch_size=16, pos_embed_rope_base=100,
           pos_embed_rope_normalize_coords='separate', pos_embed_rope_rescale_coords=2,
           pos_embed_rope_dtype='fp32', embed_dim=32, depth=4, num_heads=2, ffn_ratio=4,
           qkv_bias=True, layerscale_init=1e-5, norm_layer='layernormbf16', ffn_layer='mlp',
           n_storage_tokens=4, mask_k_bias=True)
ADAPTER = dict(interaction_indexes=[0, 1, 2, 3], pretrain_size=64, conv_inplane=16,
               n_points=4, deform_num_heads=4, drop_path_rate=0.3, init_values=0.,
               with_cffn=True, cffn_ratio=0.25, deform_ratio=0.5, add_vit_feature=True,
               use_extra_extractor=True, with_cp=False)
IMAGE = (1, 3, 96, 128)


def main() -> None:
    args, commit = parse_args(__doc__, 'facebookresearch/dinov3', EXPECTED_COMMIT)
    with tempfile.TemporaryDirectory() as tmp:
        for package in PACKAGES:
            os.makedirs(os.path.join(tmp, package), exist_ok=True)
            open(os.path.join(tmp, package, '__init__.py'), 'w').close()
        digests = write_upstream(args.repo, commit, UPSTREAM_FILES + [
            p for folder in UPSTREAM_DIRS for p in python_files(args.repo, commit, folder)], tmp)
        sys.path.insert(0, tmp)
        vits = importlib.import_module('dinov3.models.vision_transformer')
        adapter_module = importlib.import_module(
            'dinov3.eval.segmentation.models.backbone.dinov3_adapter')
        vit = vits.DinoVisionTransformer(**VIT)
        vit.init_weights()
        sync_bn, nn.SyncBatchNorm = nn.SyncBatchNorm, nn.BatchNorm2d
        try:
            model = adapter_module.DINOv3_Adapter(vit, **ADAPTER)
        finally:
            nn.SyncBatchNorm = sync_bn
        randomize(model, seed=0)
        model.eval()
        img = torch.randn(IMAGE, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            outs = model(img)
    result = {
        'state_dict': {k: v.detach().clone() for k, v in model.state_dict().items()},
        'img': img,
        'outs': [outs[k] for k in ('1', '2', '3', '4')],
        'config': dict(vit=VIT, adapter=ADAPTER),
        'notes': ('DINOv3_Adapter (protocol 2: frozen ViT, extractor-only) on '
                  'DinoVisionTransformer, upstream code run unmodified; float32, CPU, '
                  'eval mode, randomised weights (the k part of the qkv bias is random '
                  'but masked, as in the released models).'),
        'source': dict(repo=REPO_URL, commit=commit, files=digests),
    }
    save_fixture(result, args.out, 'dinov3_adapter.pt', commit, EXPECTED_COMMIT)

if __name__ == '__main__':
    main()
