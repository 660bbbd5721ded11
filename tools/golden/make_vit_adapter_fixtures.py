#!/usr/bin/env python
"""Generate small golden test fixtures from the ORIGINAL ViT-Adapter implementation
(github.com/czczup/ViT-Adapter), detection and segmentation variants.

No original class is copied here.  At run time this script reads the upstream source
files (from a bare git mirror or a normal checkout), writes them UNMODIFIED into a
temporary directory as importable packages, installs import shims for the old
dependencies they need, imports them and runs them:

* ``mmcv.runner.BaseModule``        -> minimal ``nn.Module`` subclass (mmcv 1.x API)
* ``mmdet.models.builder.BACKBONES`` / ``mmseg.models.builder.BACKBONES``
                                    -> object whose ``register_module()`` returns the class
* ``mmdet.utils`` / ``mmseg.utils.get_root_logger`` -> ``logging.getLogger``
* ``mmcv_custom.my_load_checkpoint`` -> raises (no pretrained weights are loaded)
* ``timm.models.layers``            -> ``timm.layers`` (DropPath, Mlp, to_2tuple,
                                       trunc_normal_; same math as timm 0.4.12)
* ``MultiScaleDeformableAttention`` (compiled CUDA ext.) -> empty stub module
* ``ops.functions.MSDeformAttnFunction.apply`` -> calls the ORIGINAL pure-PyTorch
  ``ms_deform_attn_core_pytorch`` from upstream ``detection/ops/functions/
  ms_deform_attn_func.py`` (so the MSDA math is the original reference core;
  ``im2col_step`` is irrelevant for it).  ``ops.modules.MSDeformAttn`` is the
  original module file.  (Upstream ``segmentation/`` has no ``ops``; its README
  symlinks ``../detection/ops``, so both models use the same ops.)
* ``torch.nn.SyncBatchNorm`` is replaced by ``torch.nn.BatchNorm2d`` only while the
  models are constructed (single CPU process; in eval mode the math is identical and
  state_dict keys are identical).

Two reduced models are built (``ViTAdapter`` from ``detection/mmdet_custom`` and from
``segmentation/mmseg_custom``), every parameter/buffer is randomised
deterministically (see ``randomize``), the models are put in eval() mode and run on
one fixed non-square image (1, 3, 128, 96).

Outputs (torch.save of plain dicts; loadable with ``torch.load(p, weights_only=True)``):

* tests/fixtures/golden/vit_adapter_det.pt
* tests/fixtures/golden/vit_adapter_seg.pt

keys: 'state_dict' (original key names; floating tensors float32, BN
num_batches_tracked int64), 'img', 'outs' (list of 4 tensors, strides 4/8/16/32),
'config' (constructor kwargs), 'intermediates' (dict of tensors captured with forward
hooks, for debugging), 'notes' (str), 'source' (str: repo, commit, paths, sha256).

Regenerate:

    cd /work/main && /root/.cache/mmvitpe/venv/bin/python \\
        tools/golden/make_vit_adapter_fixtures.py /work/.mirror/czczup+ViT-Adapter/repo \\
        --out tests/fixtures/golden

CPU only, float32, torch.set_num_threads(1), fixed seeds -> deterministic.
"""

import argparse
import hashlib
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import types
import warnings

import torch
import torch.nn as nn

EXPECTED_COMMIT = "fd64a5190f9f4530e8e5961cc87b2a3ad591190b"
REPO_URL = "https://github.com/czczup/ViT-Adapter"

OPS_FILES = {
    "ops/functions/ms_deform_attn_func.py": "detection/ops/functions/ms_deform_attn_func.py",
    "ops/modules/__init__.py": "detection/ops/modules/__init__.py",
    "ops/modules/ms_deform_attn.py": "detection/ops/modules/ms_deform_attn.py",
}
VARIANT_FILES = {
    "det": {
        "va_det/vit_adapter.py": "detection/mmdet_custom/models/backbones/vit_adapter.py",
        "va_det/adapter_modules.py": "detection/mmdet_custom/models/backbones/adapter_modules.py",
        "va_det/base/vit.py": "detection/mmdet_custom/models/backbones/base/vit.py",
    },
    "seg": {
        "va_seg/vit_adapter.py": "segmentation/mmseg_custom/models/backbones/vit_adapter.py",
        "va_seg/adapter_modules.py": "segmentation/mmseg_custom/models/backbones/adapter_modules.py",
        "va_seg/base/vit.py": "segmentation/mmseg_custom/models/backbones/base/vit.py",
    },
}

COMMON_CFG = dict(
    pretrain_size=64,
    img_size=64,  # PatchEmbed img_size -> pos_embed has (64//16)**2 + 1 = 17 slots
    patch_size=16,
    embed_dim=32,
    depth=4,
    num_heads=2,
    mlp_ratio=4,
    conv_inplane=8,
    n_points=2,
    deform_num_heads=2,
    init_values=0.0,
    interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]],
    with_cffn=True,
    cffn_ratio=0.25,
    deform_ratio=1.0,
    add_vit_feature=True,
    use_extra_extractor=True,
    drop_path_rate=0.0,
    # defaults of TIMMVisionTransformer written out explicitly:
    qkv_bias=True,
    layer_scale=True,
    drop_rate=0.0,
    attn_drop_rate=0.0,
)
VARIANT_CFG = {
    # block 0: window 3 on the 8x6 token grid -> padded to 9x6 (exercises the padding
    # path); block 2: window 2 -> 4x3 windows, no padding. deform_ratio 0.5 (the B/L
    # presets' value projection at half width); seg keeps 1.0.
    "det": dict(window_attn=[True, False, True, False], window_size=[3, None, 2, None],
                deform_ratio=0.5),
    "seg": dict(window_attn=[False, False, False, False], window_size=[None, None, None, None]),
}
IMG_SHAPE = (1, 3, 128, 96)
IMG_SEED = 1234
PARAM_SEED = {"det": 2024, "seg": 2025}


# ----------------------------------------------------------------------------
# source access
def _is_bare_git(path):
    return (os.path.isfile(os.path.join(path, "HEAD")) and os.path.isdir(os.path.join(path, "objects"))
            and not os.path.exists(os.path.join(path, ".git")))


def _git(path, *args):
    if _is_bare_git(path):
        cmd = ["git", "--git-dir", path] + list(args)
    else:
        cmd = ["git", "-C", path] + list(args)
    return subprocess.run(cmd, check=True, capture_output=True).stdout


def read_source(repo, rev, relpath):
    if _is_bare_git(repo):
        return _git(repo, "show", f"{rev}:{relpath}").decode("utf-8")
    with open(os.path.join(repo, relpath), encoding="utf-8") as f:
        return f.read()


def resolve_commit(repo, rev):
    try:
        return _git(repo, "rev-parse", rev).decode().strip()
    except Exception:  # plain extracted tree
        return "unknown"


# ----------------------------------------------------------------------------
# shims
_SHIM_FUNCTIONS_INIT = '''\
# SHIM written by tools/golden/make_vit_adapter_fixtures.py (not upstream code).
# Upstream ``MSDeformAttnFunction.apply`` calls the compiled CUDA kernel; here it calls
# the upstream pure-PyTorch reference ``ms_deform_attn_core_pytorch`` instead.
from .ms_deform_attn_func import ms_deform_attn_core_pytorch

CALL_LOG = []


class MSDeformAttnFunction:
    @staticmethod
    def apply(value, value_spatial_shapes, value_level_start_index,
              sampling_locations, attention_weights, im2col_step):
        loc = sampling_locations.detach()
        CALL_LOG.append(dict(n=loc.numel() // 2,
                             outside=int(((loc < 0) | (loc > 1)).any(-1).sum())))
        return ms_deform_attn_core_pytorch(value, value_spatial_shapes,
                                           sampling_locations, attention_weights)
'''

_MSDA_EXT_STUB = '''\
# SHIM: stands in for the compiled CUDA extension; must never be called.
def ms_deform_attn_forward(*a, **k):
    raise RuntimeError("compiled MultiScaleDeformableAttention is not available")


ms_deform_attn_backward = ms_deform_attn_forward
'''

_MMCV_CUSTOM_STUB = '''\
# SHIM: checkpoint loaders are never used (no pretrained weights).
def my_load_checkpoint(*a, **k):
    raise RuntimeError("loading checkpoints is disabled in the golden-fixture shim")


load_checkpoint = my_load_checkpoint
'''


def _module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    m.__golden_shim__ = True
    return m


class _Registry:
    def __init__(self, name):
        self.name = name
        self.module_dict = {}

    def register_module(self, name=None, force=False, module=None):
        def _register(cls):
            self.module_dict[name or cls.__name__] = cls
            return cls
        return _register


class _BaseModule(nn.Module):
    """mmcv 1.x ``BaseModule`` surface used by the original code (no params)."""

    def __init__(self, init_cfg=None):
        super().__init__()
        self.init_cfg = init_cfg


def install_shims(tmp):
    import timm.layers

    def get_root_logger(log_file=None, log_level=logging.INFO):
        return logging.getLogger("golden_vit_adapter")

    mods = {
        "mmcv": _module("mmcv"),
        "mmcv.runner": _module("mmcv.runner", BaseModule=_BaseModule),
        "mmdet": _module("mmdet"),
        "mmdet.models": _module("mmdet.models"),
        "mmdet.models.builder": _module("mmdet.models.builder", BACKBONES=_Registry("det")),
        "mmdet.utils": _module("mmdet.utils", get_root_logger=get_root_logger),
        "mmseg": _module("mmseg"),
        "mmseg.models": _module("mmseg.models"),
        "mmseg.models.builder": _module("mmseg.models.builder", BACKBONES=_Registry("seg")),
        "mmseg.utils": _module("mmseg.utils", get_root_logger=get_root_logger),
        "timm.models.layers": timm.layers,
    }
    for name, m in mods.items():
        if name in sys.modules and not getattr(sys.modules[name], "__golden_shim__", False) \
                and name != "timm.models.layers":
            raise RuntimeError(f"{name} already imported; run this script in a fresh process")
        sys.modules[name] = m
    sys.path.insert(0, tmp)


def write_tree(tmp, repo, rev):
    """Write upstream files + shim files into tmp; return {relpath: sha256}."""
    hashes = {}

    def put(rel, text):
        p = os.path.join(tmp, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w", encoding="utf-8") as f:
            f.write(text)

    for rel, up in list(OPS_FILES.items()) + [kv for v in VARIANT_FILES.values() for kv in v.items()]:
        text = read_source(repo, rev, up)
        hashes[up] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        put(rel, text)
    for pkg in ("ops", "va_det", "va_det/base", "va_seg", "va_seg/base"):
        put(f"{pkg}/__init__.py", "# package marker written by the golden-fixture script\n")
    put("ops/functions/__init__.py", _SHIM_FUNCTIONS_INIT)
    put("MultiScaleDeformableAttention.py", _MSDA_EXT_STUB)
    put("mmcv_custom/__init__.py", _MMCV_CUSTOM_STUB)
    return hashes


# ----------------------------------------------------------------------------
# model construction / randomisation
def build(variant, cfg):
    import importlib
    mod = importlib.import_module(f"va_{variant}.vit_adapter")
    sync_bn = torch.nn.SyncBatchNorm
    torch.nn.SyncBatchNorm = torch.nn.BatchNorm2d
    try:
        torch.manual_seed(0)
        model = mod.ViTAdapter(**cfg)
    finally:
        torch.nn.SyncBatchNorm = sync_bn
    for m in model.modules():
        assert not isinstance(m, sync_bn) or type(m) is nn.BatchNorm2d
    return model, mod


def _fan_in(m, w):
    if isinstance(m, nn.Linear):
        return w.shape[1]
    if isinstance(m, nn.ConvTranspose2d):  # weight (in, out/groups, kh, kw)
        return w.shape[0] * w.shape[2] * w.shape[3] // (m.stride[0] * m.stride[1])
    return w.shape[1] * w.shape[2] * w.shape[3]  # Conv2d: in/groups * kh * kw


@torch.no_grad()
def randomize(model, seed, msda_cls, injector_cls):
    g = torch.Generator().manual_seed(seed)

    def randn(t):
        return torch.randn(t.shape, generator=g, dtype=torch.float32)

    def rand(t):
        return torch.rand(t.shape, generator=g, dtype=torch.float32)

    done = set()
    for mname, m in model.named_modules():
        pre = mname + "." if mname else ""
        for pname, p in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False)):
            key = pre + pname
            if pname == "num_batches_tracked":
                done.add(key)
                continue
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                if pname == "weight":
                    new = randn(p) / math.sqrt(_fan_in(m, p))
                else:
                    new = 0.05 * randn(p)
                if mname.endswith("sampling_offsets") and pname == "bias":
                    # keep the original direction/scale pattern (point i -> radius i+1 px) + noise
                    assert isinstance(model.get_submodule(mname.rsplit(".", 1)[0]), msda_cls)
                    new = p.clone() + 0.5 * randn(p)
            elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
                if pname == "weight":
                    new = 1.0 + 0.1 * randn(p)
                elif pname == "bias":
                    new = 0.05 * randn(p)
                elif pname == "running_mean":
                    new = 0.1 * randn(p)
                elif pname == "running_var":
                    new = 1.0 + 0.2 * rand(p)
                else:
                    raise KeyError(key)
            elif isinstance(m, injector_cls) and pname == "gamma":
                new = 0.5 * randn(p)
            elif pname in ("gamma1", "gamma2"):  # ViT block layer scale
                new = 1.0 + 0.2 * randn(p)
            elif key == "level_embed":
                new = randn(p)
            elif key == "pos_embed":
                new = 0.1 * randn(p)
            else:
                raise KeyError(f"no randomisation rule for {key} ({type(m).__name__})")
            p.copy_(new)
            done.add(key)
    missing = set(model.state_dict().keys()) - done
    assert not missing, missing


# ----------------------------------------------------------------------------
def capture_hooks(model):
    inter = {}
    hooks = []

    def save(name):
        def hook(mod, inp, out):
            if isinstance(out, (tuple, list)):
                for i, o in enumerate(out):
                    if torch.is_tensor(o):
                        inter[f"{name}.out{i}"] = o.detach().clone()
            elif torch.is_tensor(out):
                inter[f"{name}.out"] = out.detach().clone()
        return hook

    hooks.append(model.spm.register_forward_hook(save("spm")))  # c1 (B,C,H,W), c2..c4 tokens
    hooks.append(model.patch_embed.register_forward_hook(save("patch_embed")))  # (x, H, W)
    for i, inter_blk in enumerate(model.interactions):
        hooks.append(inter_blk.injector.register_forward_hook(save(f"interactions.{i}.injector")))
        hooks.append(inter_blk.extractor.register_forward_hook(save(f"interactions.{i}.extractor")))
        hooks.append(inter_blk.register_forward_hook(save(f"interactions.{i}")))  # (x, c)
    for i, blk in enumerate(model.blocks):
        hooks.append(blk.register_forward_hook(save(f"blocks.{i}")))
    return inter, hooks


def drop_duplicates(inter):
    """Drop captured tensors equal to an earlier one (e.g. interactions.i.out0 ==
    blocks.i.out with one block per interaction) to keep the fixture small."""
    kept = {}
    for k, v in inter.items():
        if not any(v.shape == w.shape and torch.equal(v, w) for w in kept.values()):
            kept[k] = v
    return kept


NOTES_COMMON = """\
Original ViT-Adapter ({variant}) run unmodified via import shims (see
tools/golden/make_vit_adapter_fixtures.py).  MSDA = upstream pure-PyTorch
ms_deform_attn_core_pytorch (grid_sample bilinear, padding_mode='zeros',
align_corners=False, sampling grid = 2*loc-1).  SyncBatchNorm -> BatchNorm2d (eval mode,
identical math).  Model in eval(); float32; CPU; torch.set_num_threads(1).
All params/buffers randomised (seed {seed}): Linear/Conv/ConvT weights N(0, 1/fan_in),
biases N(0, 0.05^2); MSDA sampling_offsets.bias = original grid init (head direction
scaled by point index+1, in pixels of each level) + 0.5*N(0,1); LayerNorm/BN weight
1+0.1N, bias 0.05N; BN running_mean 0.1N, running_var 1+0.2U[0,1); injector gamma
0.5N; ViT layer-scale gamma1/gamma2 1+0.2N; level_embed N(0,1); pos_embed 0.1N
(slot 0 = cls slot, unused by ViTAdapter.forward).  img = N(0,1) seed {img_seed},
shape {img_shape}; token grid H=8, W=6; c2/c3/c4 grids 16x12, 8x6, 4x3.
Config: img_size must equal pretrain_size (PatchEmbed(img_size) sizes pos_embed,
_get_pos_embed reshapes it to pretrain_size//16 squared).  interaction_indexes
[[i,i]] -> one ViT block per interaction.  The last interaction has 2
extra_extractors.  outs = [f1, f2, f3, f4] (strides 4, 8, 16, 32) after norm1..norm4
(BatchNorm2d, eps 1e-5).  'intermediates' holds forward-hook outputs: spm.out0..3
(c1 as (B,C,H/4,W/4), c2..c4 as tokens, BEFORE level_embed), patch_embed.out0 (tokens,
before pos_embed), interactions.i.injector.out (x after injector),
blocks.i.out, interactions.i.extractor.out (c after main extractor),
interactions.i.out1 (c after the whole interaction incl. extra extractors).
Entries equal to an earlier entry are dropped (x after interaction i == blocks.i.out;
extractor.out == out1 when there are no extra extractors).
MSDA calls: {msda}.
"""
NOTES_VARIANT = {
    "det": "Detection code: ViT features added to the pyramid from the FINAL x only: "
           "x3 = x (B,C,H,W); x1 = bilinear x4 upsample of x3, x2 = x2 upsample, x4 = 0.5 "
           "downsample (align_corners=False, scale_factor=...).  Window attention in blocks "
           "0 (window 3 -> qkv zero-padded from 8x6 to 9x6 grid, padded keys NOT masked) and "
           "2 (window 2, no padding).",
    "seg": "Segmentation code: ViT features added per interaction: x1,x2,x3,x4 = outputs "
           "of interactions 0..3 (each x reshaped to (B,C,H,W)); x1 bilinear x4 upsample, x2 "
           "x2 upsample, x3 as is, x4 0.5 downsample (align_corners=False).  All attention "
           "global.",
}


def run_variant(variant, args, hashes, commit):
    cfg = dict(COMMON_CFG)
    cfg.update(VARIANT_CFG[variant])
    model, mod = build(variant, cfg)
    from ops.modules import MSDeformAttn
    import ops.functions as opsf
    adapter_modules = sys.modules[f"va_{variant}.adapter_modules"]
    assert mod.MSDeformAttn is MSDeformAttn
    randomize(model, PARAM_SEED[variant], MSDeformAttn, adapter_modules.Injector)
    model.eval()

    g = torch.Generator().manual_seed(IMG_SEED)
    img = torch.randn(IMG_SHAPE, generator=g, dtype=torch.float32)

    inter, hooks = capture_hooks(model)
    opsf.CALL_LOG.clear()
    with torch.no_grad():
        outs = model(img.clone())
    for h in hooks:
        h.remove()
    inter = drop_duplicates(inter)
    with torch.no_grad():
        outs2 = model(img.clone())
    assert all(torch.equal(a, b) for a, b in zip(outs, outs2)), "non-deterministic forward"

    exp_shapes = [(1, 32, 32, 24), (1, 32, 16, 12), (1, 32, 8, 6), (1, 32, 4, 3)]
    for o, s in zip(outs, exp_shapes):
        assert tuple(o.shape) == s, (o.shape, s)
        assert torch.isfinite(o).all()
        assert o.std() > 0.1, o.std()
        assert o.flatten(2).std(-1).min() > 1e-3  # no constant channel
    msda = opsf.CALL_LOG[:]
    n_all = sum(c["n"] for c in msda)
    n_out = sum(c["outside"] for c in msda)
    msda_str = (f"{len(msda)} per forward (4 injectors, 4 extractors, 2 extra extractors); "
                f"{n_out}/{n_all} sampling points fall outside [0,1] (zero-padded)")

    sd = {k: (v.detach().clone().float() if v.is_floating_point() else v.detach().clone())
          for k, v in model.state_dict().items()}
    src = [f"repo: {REPO_URL}", f"commit: {commit}"]
    for rel, h in hashes.items():
        if rel.startswith("detection/ops") or rel.startswith("detection/mmdet_custom" if variant == "det"
                                                               else "segmentation/"):
            src.append(f"{rel} sha256={h}")
    notes = NOTES_COMMON.format(variant=variant, seed=PARAM_SEED[variant], img_seed=IMG_SEED,
                                img_shape=IMG_SHAPE, msda=msda_str) + NOTES_VARIANT[variant]
    fixture = dict(
        state_dict=sd,
        img=img,
        outs=[o.detach().clone() for o in outs],
        config={k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in cfg.items()},
        intermediates=inter,
        notes=notes,
        source="\n".join(src),
    )
    path = os.path.join(args.out, f"vit_adapter_{variant}.pt")
    torch.save(fixture, path)
    # round trip
    back = torch.load(path, weights_only=True)
    assert all(torch.equal(a, b) for a, b in zip(back["outs"], outs))
    print(f"[{variant}] wrote {path} ({os.path.getsize(path)} bytes); "
          f"params={sum(p.numel() for p in model.parameters())}; {msda_str}")
    for i, o in enumerate(outs):
        print(f"   out{i} {tuple(o.shape)} mean={o.mean():.4f} std={o.std():.4f} "
              f"absmax={o.abs().max():.3f}")
    return model, fixture


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("repo", help="ViT-Adapter bare git dir (mirror) or checkout")
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--out", default="tests/fixtures/golden")
    ap.add_argument("--tmp", default="/tmp/golden_va", help="parent dir for the temporary package dir")
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument("--variants", default="det,seg")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    # noise from running 2022-era upstream code on a current torch (harmless here)
    warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.custom_(fwd|bwd).*")
    warnings.filterwarnings("ignore", message=r".*torch\.meshgrid: in an upcoming release.*")
    warnings.filterwarnings("ignore", message=r".*make the dimension of each attention head a power of 2.*")
    commit = resolve_commit(args.repo, args.rev)
    if commit != EXPECTED_COMMIT:
        print(f"WARNING: upstream commit {commit} != fixture commit {EXPECTED_COMMIT}", file=sys.stderr)
    os.makedirs(args.tmp, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="src_", dir=args.tmp)
    try:
        hashes = write_tree(tmp, args.repo, args.rev)
        install_shims(tmp)
        for variant in args.variants.split(","):
            run_variant(variant, args, hashes, commit)
    finally:
        if args.keep_tmp:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
