#!/usr/bin/env python
"""Golden fixture of the official EoMT ("Your ViT is Secretly an Image Segmentation Model").

No EoMT code is copied here. At run time this script reads the upstream files
(github.com/tue-mps/eomt at the pinned commit, from a bare git mirror or a
checkout), writes them UNMODIFIED into a temporary directory, imports them and runs
them:

* ``models/eomt.py``: ``EoMT`` (learned queries prepended to the tokens before the
  last ``num_blocks`` encoder blocks; before each of those blocks and after the last
  one, mask and class logits from the final-normed tokens; masked attention of
  queries to patches driven by the per-block probabilities ``attn_mask_probs``);
* ``models/scale_block.py``: ``ScaleBlock`` (ConvTranspose2d 2x2/2, GELU, depthwise
  3x3 conv without bias, timm ``LayerNorm2d``);
* ``models/vit.py``: ``ViT``, the encoder wrapper (timm model by name, or a
  transformers model through ``AutoModel`` made to look like timm by
  ``transformers_to_timm``; ImageNet mean/std buffers used by ``EoMT.forward``);
* ``training/mask_classification_loss.py``: ``MaskClassificationLoss`` (on top of
  transformers' ``Mask2FormerLoss`` and ``Mask2FormerHungarianMatcher``);
* ``training/lightning_module.py``: ``LightningModule.mask_annealing``,
  ``on_train_batch_end`` (the per-block probabilities at a training step) and
  ``block_postfix`` (the per-block loss names);
* ``training/two_stage_warmup_poly_schedule.py`` (imported by the lightning module;
  its learning rates are recorded too) and the (empty) ``models/__init__.py``,
  ``training/__init__.py``.

What is substituted, and why:

* lightning, torchmetrics and wandb are not installed; ``training/lightning_module.py``
  imports them at module level. Where a package is missing, minimal stand-ins go into
  ``sys.modules`` (``stub_missing``): ``lightning.LightningModule`` is a bare
  ``nn.Module`` subclass (only the base class of the upstream class, which is never
  instantiated here), the other names (``rank_zero_info``, the torchmetrics metrics
  and panoptic helpers) raise if called. The upstream methods used here are called
  unbound on a ``types.SimpleNamespace`` host that carries exactly the attributes they
  read (network, poly_power, device, global_step, annealing steps, log, metrics);
  none of the stand-ins takes part in the computation.
* ``ViT`` builds its backbone by name. DINOv2: ``models.vit.timm`` (the name the
  module imported) is replaced by a namespace whose ``create_model`` is timm's with
  the reduced sizes of DINOV2_TINY added to upstream's keyword arguments; the name
  is upstream's ``vit_small_patch14_reg4_dinov2`` (4 registers, layer scale,
  no_embed_class) and ``ckpt_path`` is given, as main.py links it when an EoMT
  checkpoint is loaded, so that upstream calls timm with ``pretrained=False`` (no
  download). EoMT's ViT passes ``patch_size=16`` (its default) to timm: the DINOv2
  backbone has 16 x 16 patches, not 14. DINOv3: ``models.vit.AutoModel`` is replaced
  by a stand-in whose ``from_pretrained(name)`` returns a randomly initialised
  ``DINOv3ViTModel`` of the small ``DINOV3_TINY`` config (4 registers, RoPE base 100,
  layer scale, no k bias, as ``facebook/dinov3-vits16-pretrain-lvd1689m``) with sdpa
  attention (what ``from_pretrained`` picks; EoMT passes a boolean mask, which sdpa
  reads as "attend" where True; transformers' eager path would add it). The installed
  transformers (5.x) nests the layers as ``model.layer``; upstream pins transformers
  4.56.1, whose ``DINOv3ViTModel`` holds them as ``layer`` directly, and
  ``transformers_to_timm`` reads ``backbone.layer``: the stand-in moves the
  ``ModuleList`` to ``layer`` (and drops the empty ``model`` wrapper), giving the
  4.56.1 layout; the layers themselves are the installed ones.
* ``upstream.randomize`` then puts every floating tensor off its init; it treats
  ``nn.LayerNorm`` subclasses as norms, which includes timm's ``LayerNorm2d`` in the
  ScaleBlocks (weight 1 + N(0, 0.1), bias N(0, 0.1)). Restored afterwards, because
  they are constants and not weights: the ViT's ``pixel_mean``/``pixel_std`` buffers
  (ImageNet statistics) and DINOv3's RoPE ``inv_freq`` (non-persistent, a function of
  base and head width). ``attn_mask_probs`` is set for each run (below).

The models: width 48, depth 6, MLP hidden 96 (so that the fixture stays small),
patch 16, 4 registers + class token; DINOv2 with 2 heads and an absolute position
table for the 4 x 6 grid, DINOv3 with 4 heads (head width 12) and RoPE. EoMT with
num_q 8, num_classes 5 (class head 6 outputs), num_blocks 4 (queries join before
block 2 of 6), masked_attn_enabled True; two ScaleBlocks (log2(16) - 2). Input: one
non-square image (1, 3, 64, 96) in [0, 1] (what the LightningModule gives EoMT after
dividing by 255); mask logits at 16 x 24 (stride 4). float32, CPU, eval mode, two runs
per model:

* 'outs': ``attn_mask_probs`` = 0 for every block (as at the end of the annealing and
  in released checkpoints): each query's mask is dropped (``torch.rand > 0``, seeded
  with MASK_SEED before the call), so attention is not masked; the intermediate
  predictions are still returned. Checked against a run with
  ``masked_attn_enabled=False`` (same final prediction).
* 'outs_masked': ``attn_mask_probs`` = 1 for every block (as at initialisation and
  before each block's annealing starts): no random numbers are drawn; the mask of
  block ``L - num_blocks + k`` comes from mask_logits[k] (bilinear to the patch grid,
  > 0).

'annealing': ``on_train_batch_end`` (hence ``mask_annealing``, poly power 0.9) at
global steps ANNEAL_STEPS for start steps [0, 100, 200, 300] and end steps
[100, 200, 300, 400]. 'loss': ``MaskClassificationLoss`` with the upstream defaults
(12544 points, oversample 3, importance 0.75, no-object 0.1, mask 5, dice 5, class 2)
on the dinov2 'outs' predictions and one target image with 2 instances (masks at image
resolution 64 x 96, labels [1, 3]); per block, ``torch.manual_seed(LOSS_SEED)`` right
before the matcher call (its indices are recorded) and again right before the loss
call, so that both draw the same points: RNG order inside the loss call is matcher
``torch.rand(1, num_points, 2)`` per image, then ``torch.rand(n_matched,
3 * num_points, 2)`` and ``torch.rand(n_matched, num_points - int(0.75 * num_points),
2)`` in ``sample_points_using_uncertainty``. Losses are named as in
``training_step`` (``block_postfix``) and summed by upstream's ``loss_total``.
'lr_schedule': ``TwoStageWarmupPolySchedule`` learning rates for 2 backbone groups and
1 other group.

Output (``torch.load(path, weights_only=True)``): tests/fixtures/golden/eomt.pt with
'dinov2' and 'dinov3', each {'state_dict' (EoMT's own keys: ``encoder.backbone.*``,
``encoder.pixel_mean``/``pixel_std``, ``attn_mask_probs`` (zeros), ``q.weight``,
``class_head.*``, ``mask_head.{0,2,4}.*``, ``upscale.{0,1}.*``), 'img', 'config',
'outs' and 'outs_masked' ({'mask_logits': 5 x (1, 8, 16, 24), 'class_logits':
5 x (1, 8, 6), 'attn_mask_probs'}, blocks in order, the final one last)};
'annealing' {'start_steps', 'end_steps', 'poly_power', 'steps', 'probs' (steps x
blocks)}; 'loss' {'config', 'seed', 'mask_logits', 'class_logits', 'targets',
'indices' (per block, per image (query idx, target idx)), 'losses' (per block dicts
loss_mask, loss_dice, loss_cross_entropy), 'losses_named', 'loss_total'};
'lr_schedule'; 'notes'; 'source' (repo, commit, sha256 of every upstream file used,
timm and transformers versions).

Regenerate:

    /root/.cache/mmvitpe/venv/bin/python tools/golden/make_eomt_fixtures.py \\
        /work/.mirror/tue-mps+eomt/repo --out tests/fixtures/golden
"""
import importlib
import importlib.util
import os
import sys
import tempfile
import types
from functools import partial

import timm
import torch
from torch import nn

from upstream import parse_args, randomize, save_fixture, write_upstream

EXPECTED_COMMIT = '7bd19ddd621c5c6adedcd260458a34783cd4a45f'
REPO_URL = 'https://github.com/tue-mps/eomt'
# transformers is installed off the default path here; used if not importable.
TRANSFORMERS_DIR = os.environ.get('EOMT_TRANSFORMERS_DIR',
                                  '/root/.cache/mmvitpe/venv/transformers')
UPSTREAM_FILES = ['models/__init__.py', 'models/eomt.py', 'models/scale_block.py',
                  'models/vit.py', 'training/__init__.py',
                  'training/mask_classification_loss.py', 'training/lightning_module.py',
                  'training/two_stage_warmup_poly_schedule.py']
# What training/lightning_module.py imports from packages that may be missing.
STUBS = {'lightning': {'LightningModule': None},
         'lightning.fabric': {}, 'lightning.fabric.utilities': {'rank_zero_info': None},
         'torchmetrics': {},
         'torchmetrics.classification': {'MulticlassJaccardIndex': None},
         'torchmetrics.detection': {'PanopticQuality': None, 'MeanAveragePrecision': None},
         'torchmetrics.functional': {}, 'torchmetrics.functional.detection': {},
         'torchmetrics.functional.detection._panoptic_quality_common': {
             '_prepocess_inputs': None, '_Color': None, '_get_color_areas': None,
             '_calculate_iou': None},
         'wandb': {}}
IMAGE = (1, 3, 64, 96)
EOMT = dict(num_classes=5, num_q=8, num_blocks=4, masked_attn_enabled=True)
DINOV2_NAME = 'vit_small_patch14_reg4_dinov2'
DINOV2_TINY = dict(embed_dim=48, depth=6, num_heads=2, mlp_ratio=2.0)
DINOV3_NAME = 'facebook/dinov3-vits16-pretrain-lvd1689m'
DINOV3_TINY = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=6,
                   num_attention_heads=4, patch_size=16, num_register_tokens=4,
                   layerscale_value=1.0, rope_theta=100.0, layer_norm_eps=1e-5,
                   key_bias=False, use_gated_mlp=False, image_size=64)
ENCODER = dict(img_size=IMAGE[2:], patch_size=16)
MASK_SEED = 3
ANNEALING = dict(start_steps=[0, 100, 200, 300], end_steps=[100, 200, 300, 400],
                 poly_power=0.9)
ANNEAL_STEPS = [0, 1, 50, 99, 100, 150, 200, 250, 299, 300, 350, 399, 400, 1000]
LOSS = dict(num_points=12544, oversample_ratio=3.0, importance_sample_ratio=0.75,
            mask_coefficient=5.0, dice_coefficient=5.0, class_coefficient=2.0,
            num_labels=EOMT['num_classes'], no_object_coefficient=0.1)
LOSS_SEED = 4
LABELS = [1, 3]
LR = dict(base_lrs=[0.5, 1.0, 1.0], num_backbone_params=2, warmup_steps=(5, 10),
          total_steps=40, poly_power=0.9)


def stub_missing() -> list:
    """Stand-ins for the packages of STUBS that cannot be imported; returns their names."""
    def unused(name):
        def fail(*args, **kwargs):
            raise NotImplementedError(f'stand-in: {name} is not used by this fixture')
        return fail

    missing = [top for top in ('lightning', 'torchmetrics', 'wandb')
               if importlib.util.find_spec(top) is None]
    for name, attrs in STUBS.items():
        if name.split('.')[0] not in missing:
            continue
        module = types.ModuleType(name, 'stand-in (tools/golden/make_eomt_fixtures.py)')
        for attr in attrs:
            module.__dict__[attr] = (type(attr, (nn.Module,), {})
                                     if attr == 'LightningModule' else unused(attr))
        sys.modules[name] = module
        parent, _, child = name.rpartition('.')
        if parent:
            setattr(sys.modules[parent], child, module)
    return missing


def tiny_dinov3(name):
    """AutoModel.from_pretrained(name) stand-in: a random DINOv3ViTModel, 4.56.1 layout."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel
    config = DINOv3ViTConfig(**DINOV3_TINY)
    config._attn_implementation = 'sdpa'
    model = DINOv3ViTModel(config)
    if not hasattr(model, 'layer'):
        layer = model.model.layer
        del model.model
        model.layer = layer
    assert model.config._attn_implementation == 'sdpa', model.config._attn_implementation
    return model


def build(vit_module, eomt_module, family):
    if family == 'dinov2':
        real_timm = vit_module.timm
        vit_module.timm = types.SimpleNamespace(
            create_model=partial(real_timm.create_model, **DINOV2_TINY))
        try:
            encoder = vit_module.ViT(backbone_name=DINOV2_NAME,
                                     ckpt_path='(EoMT checkpoint: no timm download)',
                                     **ENCODER)
        finally:
            vit_module.timm = real_timm
    else:
        real_auto = vit_module.AutoModel
        vit_module.AutoModel = types.SimpleNamespace(from_pretrained=tiny_dinov3)
        try:
            encoder = vit_module.ViT(backbone_name=DINOV3_NAME, **ENCODER)
        finally:
            vit_module.AutoModel = real_auto
    return eomt_module.EoMT(encoder, **EOMT)


def run(model, img, prob):
    model.attn_mask_probs.fill_(prob)
    torch.manual_seed(MASK_SEED)
    with torch.no_grad():
        mask_logits, class_logits = model(img)
    return {'mask_logits': [t.clone() for t in mask_logits],
            'class_logits': [t.clone() for t in class_logits],
            'attn_mask_probs': model.attn_mask_probs.clone()}


def case(vit_module, eomt_module, family, seed, img):
    model = build(vit_module, eomt_module, family)
    constants = {k: v.clone() for k, v in model.named_buffers()
                 if k.endswith(('pixel_mean', 'pixel_std', 'inv_freq'))}
    randomize(model, seed=seed)
    with torch.no_grad():
        for k, v in model.named_buffers():
            if k in constants:
                v.copy_(constants[k])
    model.eval()
    outs_masked = run(model, img, 1.0)
    outs = run(model, img, 0.0)
    model.masked_attn_enabled = False
    with torch.no_grad():
        plain = model(img)
    model.masked_attn_enabled = True
    torch.testing.assert_close(plain[0][-1], outs['mask_logits'][-1])
    torch.testing.assert_close(plain[1][-1], outs['class_logits'][-1])
    backbone = model.encoder.backbone
    config = dict(family=family, eomt=EOMT, encoder=dict(ENCODER, img_size=list(IMAGE[2:])),
                  image=IMAGE, seed=seed, mask_seed=MASK_SEED,
                  patch_size=list(backbone.patch_embed.patch_size),
                  grid_size=list(backbone.patch_embed.grid_size),
                  num_prefix_tokens=int(backbone.num_prefix_tokens),
                  num_upscale=len(model.upscale))
    if family == 'dinov2':
        config.update(backbone_name=DINOV2_NAME, timm_overrides=DINOV2_TINY,
                      fused_attn=bool(backbone.blocks[0].attn.fused_attn))
    else:
        config.update(backbone_name=DINOV3_NAME, dinov3_config=DINOV3_TINY,
                      attn_implementation='sdpa')
    model.attn_mask_probs.zero_()
    return model, {
        'state_dict': {k: v.detach().clone() for k, v in model.state_dict().items()},
        'img': img, 'config': config, 'outs': outs, 'outs_masked': outs_masked}


def annealing(lightning_module, model):
    """Upstream's on_train_batch_end on a host with the attributes it reads."""
    host = types.SimpleNamespace(
        network=model, attn_mask_annealing_enabled=True, device=torch.device('cpu'),
        attn_mask_annealing_start_steps=ANNEALING['start_steps'],
        attn_mask_annealing_end_steps=ANNEALING['end_steps'],
        poly_power=ANNEALING['poly_power'], global_step=0, log=lambda *a, **k: None)
    host.mask_annealing = partial(lightning_module.LightningModule.mask_annealing, host)
    probs = []
    for step in ANNEAL_STEPS:
        host.global_step = step
        lightning_module.LightningModule.on_train_batch_end(host, None, None)
        probs.append(model.attn_mask_probs.clone())
    return dict(ANNEALING, steps=ANNEAL_STEPS, probs=torch.stack(probs))


def loss(lightning_module, loss_module, model, outs):
    criterion = loss_module.MaskClassificationLoss(**LOSS)
    h, w = IMAGE[2:]
    masks = torch.zeros(len(LABELS), h, w, dtype=torch.bool)
    masks[0, 8:40, 10:50] = True
    masks[1, 30:64, 40:96] = True
    masks[1, 20:30, 70:90] = True
    targets = [{'masks': masks, 'labels': torch.tensor(LABELS)}]
    host = types.SimpleNamespace(network=model, metrics=[None] * (model.num_blocks + 1))
    indices, losses, named = [], [], {}
    with torch.no_grad():
        # As training_step does, each block's predictions in turn, seeded for each call.
        for i, (mask_logits, class_logits) in enumerate(
                zip(outs['mask_logits'], outs['class_logits'])):
            torch.manual_seed(LOSS_SEED)
            matched = criterion.matcher(
                masks_queries_logits=mask_logits,
                mask_labels=[t['masks'].to(mask_logits.dtype) for t in targets],
                class_queries_logits=class_logits,
                class_labels=[t['labels'].long() for t in targets])
            torch.manual_seed(LOSS_SEED)
            block = criterion(masks_queries_logits=mask_logits,
                              class_queries_logits=class_logits, targets=targets)
            indices.append([(i_q.clone(), i_t.clone()) for i_q, i_t in matched])
            losses.append({k: v.clone() for k, v in block.items()})
            postfix = lightning_module.LightningModule.block_postfix(host, i)
            named.update({f'{k}{postfix}': v.clone() for k, v in block.items()})
        total = criterion.loss_total(named, lambda *a, **k: None)
    return {'config': LOSS, 'seed': LOSS_SEED, 'mask_logits': outs['mask_logits'],
            'class_logits': outs['class_logits'], 'targets': targets, 'indices': indices,
            'losses': losses, 'losses_named': named, 'loss_total': total}


def lr_schedule(schedule_module):
    params = [nn.Parameter(torch.zeros(1)) for _ in LR['base_lrs']]
    optimizer = torch.optim.AdamW([{'params': [p], 'lr': lr}
                                   for p, lr in zip(params, LR['base_lrs'])])
    scheduler = schedule_module.TwoStageWarmupPolySchedule(
        optimizer, num_backbone_params=LR['num_backbone_params'],
        warmup_steps=LR['warmup_steps'], total_steps=LR['total_steps'],
        poly_power=LR['poly_power'])
    lrs = []
    for _ in range(LR['total_steps'] + 1):
        lrs.append(list(scheduler.get_last_lr()))
        optimizer.step()
        scheduler.step()
    return dict(LR, lrs=torch.tensor(lrs, dtype=torch.float64))


def main() -> None:
    args, commit = parse_args(__doc__, 'tue-mps/eomt', EXPECTED_COMMIT)
    if importlib.util.find_spec('transformers') is None and os.path.isdir(TRANSFORMERS_DIR):
        sys.path.append(TRANSFORMERS_DIR)
    import transformers
    with tempfile.TemporaryDirectory() as tmp:
        digests = write_upstream(args.repo, commit, UPSTREAM_FILES, tmp)
        sys.path.insert(0, tmp)
        stubbed = stub_missing()
        vit_module = importlib.import_module('models.vit')
        eomt_module = importlib.import_module('models.eomt')
        loss_module = importlib.import_module('training.mask_classification_loss')
        lightning_module = importlib.import_module('training.lightning_module')
        schedule_module = importlib.import_module('training.two_stage_warmup_poly_schedule')
        img = torch.rand(IMAGE, generator=torch.Generator().manual_seed(1))
        model2, dinov2 = case(vit_module, eomt_module, 'dinov2', 0, img)
        _, dinov3 = case(vit_module, eomt_module, 'dinov3', 2, img)
        loss_case = loss(lightning_module, loss_module, model2, dinov2['outs'])
        anneal = annealing(lightning_module, model2)
        lrs = lr_schedule(schedule_module)
    for name, c in (('dinov2', dinov2), ('dinov3', dinov3)):
        grid = c['config']['grid_size']
        attended = [round(float((nn.functional.interpolate(m, grid, mode='bilinear') > 0)
                                .float().mean()), 2)
                    for m in c['outs_masked']['mask_logits'][:-1]]
        print(name, 'query->patch entries attended per masked block:', attended)
    print('losses', {k: round(float(v), 4) for k, v in loss_case['losses_named'].items()})
    result = {
        'dinov2': dinov2,
        'dinov3': dinov3,
        'annealing': anneal,
        'loss': loss_case,
        'lr_schedule': lrs,
        'notes': ('EoMT (models/eomt.py) on a tiny timm DINOv2 (reg4, patch 16 as EoMT '
                  'builds it) and a tiny transformers DINOv3ViTModel (reg4, RoPE), upstream '
                  'code run unmodified (lightning/torchmetrics/wandb stubbed, unused; encoder '
                  'factories replaced by tiny random ones; DINOv3 layers moved to the '
                  'transformers 4.56.1 layout); float32, CPU, eval, randomised weights with '
                  'pixel_mean/std and RoPE inv_freq kept. outs: attn_mask_probs 0 (masks '
                  'dropped, seeded with config.mask_seed), outs_masked: attn_mask_probs 1 '
                  '(masks applied). Lists hold num_blocks + 1 predictions: before each of the '
                  'last num_blocks blocks, then after the final block. loss: per block '
                  'torch.manual_seed(seed) before the matcher call and again before the loss '
                  'call; losses unweighted per block (loss_mask and loss_dice divided by the '
                  'number of matched targets), loss_total = sum over blocks of 5 * mask + '
                  '5 * dice + 2 * cross_entropy. annealing: probs[s, i] for block i at '
                  'global step steps[s].'),
        'source': dict(repo=REPO_URL, commit=commit, files=digests, timm=timm.__version__,
                       transformers=transformers.__version__, stubbed=stubbed),
    }
    save_fixture(result, args.out, 'eomt.pt', commit, EXPECTED_COMMIT)


if __name__ == '__main__':
    main()
