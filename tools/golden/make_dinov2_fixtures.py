#!/usr/bin/env python
"""Golden fixtures of the official DINOv2 ViT in its own checkpoint layout.

No DINOv2 code is copied here. At run time this script reads the upstream files
(github.com/facebookresearch/dinov2 at the pinned commit, from a bare git mirror
or a checkout: ``dinov2/__init__.py``, ``dinov2/layers/*``,
``dinov2/models/__init__.py`` and ``dinov2/models/vision_transformer.py``), writes
them UNMODIFIED into a temporary directory, imports them with xformers disabled
(``XFORMERS_DISABLED=1``: plain PyTorch attention) and runs them.

Two reduced ``DinoVisionTransformer`` models (width 32, depth 4 in 2 block
chunks as the large/giant checkpoints, 2 heads, patch 14, a 4x4 table at 56 px,
layer scale), with the options of the hub models:

* ``dinov2``: no registers, ``interpolate_offset=0.1``, no antialias (``dinov2_vits14``);
* ``dinov2_reg4``: 4 registers, ``interpolate_offset=0``, antialias (``dinov2_vits14_reg``).

Every parameter is randomised deterministically (see
``upstream.randomize``); in eval mode the normed patch
tokens of ``forward_features`` are stored at the pretraining grid (56x56) and at
another one (70x98: 5x7 patches, the table interpolated).

Output (``torch.load(path, weights_only=True)``): tests/fixtures/golden/dinov2.pt,
{variant: {'state_dict', 'config', 'outs': {(h, w): tokens}}} plus 'images',
'notes', 'source' (repo, commit, sha256 of every file used).

Regenerate:

    /root/.cache/mmvitpe/venv/bin/python tools/golden/make_dinov2_fixtures.py \\
        /work/.mirror/facebookresearch+dinov2/repo --out tests/fixtures/golden
"""
import importlib
import os
import sys
import tempfile

import torch

from upstream import parse_args, python_files, randomize, save_fixture, write_upstream

EXPECTED_COMMIT = 'b8931f7bf91576930313be2c6d6af376033b35f0'
REPO_URL = 'https://github.com/facebookresearch/dinov2'
VIT = dict(img_size=56, patch_size=14, embed_dim=32, depth=4, num_heads=2, mlp_ratio=4,
           init_values=1e-5, ffn_layer='mlp', block_chunks=2)
VARIANTS = {
    'dinov2': dict(num_register_tokens=0, interpolate_offset=0.1, interpolate_antialias=False),
    'dinov2_reg4': dict(num_register_tokens=4, interpolate_offset=0.0,
                        interpolate_antialias=True),
}
SIZES = [(56, 56), (70, 98)]


def main() -> None:
    args, commit = parse_args(__doc__, 'facebookresearch/dinov2', EXPECTED_COMMIT)
    os.environ['XFORMERS_DISABLED'] = '1'
    images = {size: torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(i))
              for i, size in enumerate(SIZES)}
    result = {'images': images, 'source': dict(repo=REPO_URL, commit=commit),
              'notes': ('official DinoVisionTransformer run unmodified (xformers off), float32, '
                        'CPU, eval, randomised weights; outs are forward_features '
                        "'x_norm_patchtokens'")}
    with tempfile.TemporaryDirectory() as tmp:
        result['source']['files'] = write_upstream(args.repo, commit, [
            'dinov2/__init__.py', 'dinov2/models/__init__.py',
            'dinov2/models/vision_transformer.py',
            *python_files(args.repo, commit, 'dinov2/layers')], tmp)
        sys.path.insert(0, tmp)
        vits = importlib.import_module('dinov2.models.vision_transformer')
        for seed, (name, options) in enumerate(VARIANTS.items()):
            model = vits.DinoVisionTransformer(**VIT, **options)
            randomize(model, seed=seed)
            model.eval()
            with torch.no_grad():
                outs = {size: model.forward_features(img)['x_norm_patchtokens']
                        for size, img in images.items()}
            result[name] = dict(
                state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
                config=dict(VIT, **options), outs=outs)
    save_fixture(result, args.out, 'dinov2.pt', commit, EXPECTED_COMMIT)

if __name__ == '__main__':
    main()
