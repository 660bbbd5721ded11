#!/usr/bin/env python
"""Golden fixture of DEIMv2's own ``DINOv3STAs`` (DINOv3 ViT + Spatial Tuning Adapter).

No DEIMv2 code is copied here. At run time this script reads the upstream files
(github.com/Intellindust-AI-Lab/DEIMv2 at the pinned commit, from a bare git mirror
or a checkout), writes them UNMODIFIED into a temporary directory, imports them and
runs them:

* ``engine/backbone/dinov3/*`` (DEIMv2's vendored DINOv3: ``vision_transformer.py``,
  ``layers/*``, ``utils/*``, with their own ``__init__.py`` files):
  ``DinoVisionTransformer``;
* ``engine/backbone/dinov3_adapter.py``: ``SpatialPriorModulev2`` and
  ``DINOv3STAs`` (it also imports ``engine/backbone/vit_tiny.py``, the ViT-Tiny
  branch, which is written and imported but not run);
* ``engine/core/workspace.py``: the real ``register`` decorator of
  ``@register() class DINOv3STAs``.

What is substituted, and why:

* ``engine``, ``engine/backbone`` and ``engine/core`` get empty ``__init__.py``
  files instead of upstream's: ``engine/__init__.py`` imports the training stack
  (optim, data, deim), ``engine/backbone/__init__.py`` every backbone, and
  ``engine/core/__init__.py`` the YAML config machinery (which needs tensorboard).
  ``from ..core import register`` in dinov3_adapter.py is served by setting the
  attribute ``engine.core.register`` to upstream's ``engine.core.workspace.register``
  (the function itself, unmodified).
* ``DinoVisionTransformer(name)`` takes every option from the module-level dict
  ``configs`` of vision_transformer.py, which only holds 'dinov3_vits16' and
  'dinov3_vits16plus'. One entry, 'dinov3_golden_tiny', is added to that dict at
  run time: a copy of 'dinov3_vits16' (RoPE base 100, 'separate' coords, rescale 2,
  fp32 periods, 4 storage tokens, layer scale 1e-5, LayerNorm eps 1e-5, qkv bias
  with the k part masked, MLP FFN ratio 4) with embed_dim 48, depth 4, 2 heads
  (head width 24; width 64 would take the fixture over 1.5 MB). DINOv3STAs takes
  the DINOv3 branch for any name containing 'dinov3'.
* ``torch.nn.SyncBatchNorm`` is ``BatchNorm2d`` while the model is constructed
  (one CPU process; in eval mode the math and the keys are the same).
* ``weights_path=None``: no checkpoint is read. DEIMv2's vendored ``init_weights_vit``
  leaves the qkv ``bias_mask`` buffers at their NaN construction value (only a
  checkpoint fills them), so after randomising, every ``bias_mask`` is set to the
  released checkpoints' pattern: 1 over the q and v thirds, 0 over the k third.
* Recording only (no effect on the math): forward hooks on ``sta.stem``, ``sta``
  and the ViT blocks at the taps, forward pre-hooks on ``convs[i]``, and an
  instance attribute that wraps ``dinov3.get_intermediate_layers`` to keep what it
  returns to DINOv3STAs.forward.

Every parameter and buffer is randomised deterministically, the model is put in
eval() mode and run on one non-square image (1, 3, 96, 128) (both sides multiples
of 32: DINOv3STAs concatenates maps of H // 16 * 2**k rows with stride-2 conv
outputs of ceil sizes, so other sizes fail). float32 on CPU; no autocast anywhere.

Output (``torch.load(path, weights_only=True)``):
tests/fixtures/golden/deimv2_sta.pt with 'state_dict' (DINOv3STAs' own keys:
``dinov3.*`` the ViT, ``sta.*`` the spatial prior module, ``convs.{0,1,2}``,
``norms.{0,1,2}``), 'img', 'outs' (3 maps, strides 8/16/32), 'spm_stem' (stride
4, after the max pool), 'spm_outs' (the SPM's 3 maps, strides 8/16/32),
'vit_taps' (what get_intermediate_layers returns: per tap a dict with
'patch_tokens' (B, N, D), normed, prefix tokens dropped, and 'cls_token' (B, D)),
'vit_taps_prenorm' (the tapped blocks' outputs (B, 1 + 4 + N, D), before the final
norm), 'fused' (the inputs of convs[0..2]: the resized ViT map concatenated with
the SPM map), 'config', 'notes', 'source' (repo, commit, sha256 of every file
used).

Regenerate:

    /root/.cache/mmvitpe/venv/bin/python tools/golden/make_sta_fixtures.py \\
        /work/.mirror/Intellindust-AI-Lab+DEIMv2/repo --out tests/fixtures/golden
"""
import enum
import importlib
import os
import sys
import tempfile

import torch
from torch import nn

from upstream import parse_args, python_files, randomize, save_fixture, write_upstream

EXPECTED_COMMIT = '0fff8d4dcdc272e6cf2d84be31399db471357941'
REPO_URL = 'https://github.com/Intellindust-AI-Lab/DEIMv2'
EMPTY_PACKAGES = ['engine', 'engine/backbone', 'engine/core']
UPSTREAM_DIRS = ['engine/backbone/dinov3', 'engine/backbone/dinov3/layers',
                 'engine/backbone/dinov3/utils']
UPSTREAM_FILES = ['engine/core/workspace.py', 'engine/backbone/vit_tiny.py',
                  'engine/backbone/dinov3_adapter.py']
VIT_NAME = 'dinov3_golden_tiny'
VIT_BASE = 'dinov3_vits16'
VIT_OVERRIDES = dict(embed_dim=48, depth=4, num_heads=2)
STA = dict(name=VIT_NAME, weights_path=None, interaction_indexes=[1, 2, 3], finetune=True,
           patch_size=16, use_sta=True, conv_inplane=16, hidden_dim=32)
IMAGE = (1, 3, 96, 128)


def plain(config: dict) -> dict:
    return {k: v.value if isinstance(v, enum.Enum) else v for k, v in config.items()}


def main() -> None:
    args, commit = parse_args(__doc__, 'Intellindust-AI-Lab/DEIMv2', EXPECTED_COMMIT)
    with tempfile.TemporaryDirectory() as tmp:
        for package in EMPTY_PACKAGES:
            os.makedirs(os.path.join(tmp, package), exist_ok=True)
            open(os.path.join(tmp, package, '__init__.py'), 'w').close()
        digests = write_upstream(args.repo, commit, UPSTREAM_FILES + [
            p for folder in UPSTREAM_DIRS for p in python_files(args.repo, commit, folder)], tmp)
        sys.path.insert(0, tmp)
        core = importlib.import_module('engine.core')
        core.register = importlib.import_module('engine.core.workspace').register
        vits = importlib.import_module('engine.backbone.dinov3.vision_transformer')
        sta_module = importlib.import_module('engine.backbone.dinov3_adapter')
        vits.configs[VIT_NAME] = dict(vits.configs[VIT_BASE], **VIT_OVERRIDES)
        sync_bn, nn.SyncBatchNorm = nn.SyncBatchNorm, nn.BatchNorm2d
        try:
            model = sta_module.DINOv3STAs(**STA)
        finally:
            nn.SyncBatchNorm = sync_bn
        randomize(model, seed=0)
        with torch.no_grad():
            for module in model.modules():
                if getattr(module, 'bias_mask', None) is not None:
                    o = module.out_features
                    module.bias_mask.fill_(1)
                    module.bias_mask[o // 3:2 * o // 3].fill_(0)
        model.eval()

        rec = {'stem': [], 'spm': [], 'prenorm': [], 'fused': [], 'taps': []}
        model.sta.stem.register_forward_hook(lambda m, i, o: rec['stem'].append(o))
        model.sta.register_forward_hook(lambda m, i, o: rec['spm'].extend(o))
        for index in STA['interaction_indexes']:
            model.dinov3.blocks[index].register_forward_hook(
                lambda m, i, o: rec['prenorm'].append(o))
        for conv in model.convs:
            conv.register_forward_pre_hook(lambda m, i: rec['fused'].append(i[0]))
        intermediate = model.dinov3.get_intermediate_layers

        def recording(*a, **kw):
            out = intermediate(*a, **kw)
            rec['taps'].extend(out)
            return out
        model.dinov3.get_intermediate_layers = recording

        img = torch.randn(IMAGE, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            outs = model(img)
        del model.dinov3.get_intermediate_layers
        digests = {p: d for p, d in digests.items()
                   if p[:-3].replace('/__init__', '').replace('/', '.') in sys.modules}
        vit_config = plain(vits.configs[VIT_NAME])
    result = {
        'state_dict': {k: v.detach().clone() for k, v in model.state_dict().items()},
        'img': img,
        'outs': list(outs),
        'spm_stem': rec['stem'][0],
        'spm_outs': rec['spm'],
        'vit_taps': [dict(patch_tokens=p, cls_token=c) for p, c in rec['taps']],
        'vit_taps_prenorm': rec['prenorm'],
        'fused': rec['fused'],
        'config': dict(vit_base=VIT_BASE, vit_overrides=VIT_OVERRIDES, vit=vit_config,
                       sta=STA, image=IMAGE),
        'notes': ('DEIMv2 DINOv3STAs (DINOv3 ViT branch) on its vendored '
                  'DinoVisionTransformer, upstream code run unmodified; the ViT options are '
                  "dinov3_vits16's at width 48, depth 4, 2 heads (an entry added to "
                  "vision_transformer.configs); SyncBatchNorm built as BatchNorm2d; float32, "
                  'CPU, eval mode, randomised weights, qkv bias_mask set to the released '
                  '1/0/1 (q/k/v) pattern. interaction_indexes are 0-based block indexes.'),
        'source': dict(repo=REPO_URL, commit=commit, files=digests),
    }
    save_fixture(result, args.out, 'deimv2_sta.pt', commit, EXPECTED_COMMIT)

if __name__ == '__main__':
    main()
