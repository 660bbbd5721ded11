#!/usr/bin/env python
"""Generate small golden test fixtures from the ORIGINAL reference implementations
of eight positional-encoding papers.

The original code is NOT copied here.  At run time this script reads the upstream
source files (from a git checkout or from a bare git mirror), extracts only the
needed top-level definitions with ``ast`` and ``exec``s them in a namespace where
the old imports they rely on (timm 0.4.x ``timm.models.layers``, ``np.float``) are
provided by small shims.  The original logic is executed unmodified.

Upstream sources read (commits used for the checked-in fixtures):

* SP-ViT  github.com/ZhouYuxuanYX/SP-ViT-Learning-2D-Spatial-Priors-for-Vision-Transformers
  @ c189568c43adc713cb8fe05263e29667ce705f37, ``tlt/models/layers.py``: ``SP_SA``
  (its relative-index helper is the method ``SP_SA.get_rel_indices``).
* LaPE    github.com/Ingrid725/LaPE @ e188f7e56126b788c28afca0454c57b7d033b963,
  ``vision_transformer.py``: ``Mlp``, ``Attention``, ``Block`` (join_type='LaPE').
* RoPE-ViT github.com/naver-ai/rope-vit @ ce85c2e56c5ff3aadc10e1a849872081f7b86293,
  ``models/vit_rope.py``: ``init_random_2d_freqs``, ``compute_mixed_cis``,
  ``compute_axial_cis``, ``init_t_xy``, ``reshape_for_broadcast``, ``apply_rotary_emb``.
* MAE     github.com/facebookresearch/mae @ efb2a8062c206524e35e47d04501ed4f544c0ae8,
  ``util/pos_embed.py``: ``get_2d_sincos_pos_embed`` (+ the two helpers it calls).
* DINOv3  github.com/facebookresearch/dinov3 @ 6876159a11b4df116f30f667f8c9888617df0751,
  ``dinov3/layers/rope_position_encoding.py``: ``RopePositionEmbedding``;
  ``dinov3/layers/attention.py``: ``rope_rotate_half``, ``rope_apply``, ``SelfAttention``.
* EVA-02  github.com/baaivision/EVA @ 5623d08bb08a8268c7bc18e1d9b8b4bd651fe4d9,
  ``EVA-02/asuka/rope.py``: ``broadcat``, ``rotate_half``, ``VisionRotaryEmbeddingFast``
  (needs ``einops``).
* CROMA   github.com/antofuller/CROMA @ 59505a6bcadbf36ba20767270154bf9f3067c5e7,
  ``use_croma.py``: ``get_2dalibi``.
* LookHere github.com/GreenCUBIC/lookhere @ 641deab8c6610b6480a5c564a9a34a29bf934574,
  ``lookhere.py``: ``get_none_slopes``, ``get_slopes``, ``create_lh_bias_tensor``,
  ``create_lh_layer_tensor`` (needs ``scipy``).

Outputs (torch.save of plain dicts of tensors/ints/floats/strings; loadable with
``torch.load(path, weights_only=True)``):

* tests/fixtures/golden/spvit_sp_sa.pt
* tests/fixtures/golden/lape_block.pt
* tests/fixtures/golden/ropevit.pt
* tests/fixtures/golden/mae_sincos.pt
* tests/fixtures/golden/dinov3_rope.pt, eva02_rope.pt, croma_alibi.pt, lookhere_bias.pt

Each file carries a 'notes' string (formulas / conventions) and a 'source' string
(repo, commit, path, sha256 of the source file that was executed).

Regenerate (repo arguments may be a bare git dir, as returned by the mirror, or a
normal checkout / extracted tree; ``--rev`` selects the revision for bare git dirs;
only the fixtures of the repos given are made). einops and scipy, which EVA's and
LookHere's code import, are not project dependencies: install them aside, e.g.
``pip install --target /tmp/golden_deps einops scipy`` and ``PYTHONPATH=/tmp/golden_deps``:

    cd /work/main && /root/.cache/mmvitpe/venv/bin/python tools/golden/make_pe_fixtures.py \\
        --spvit /work/.mirror/ZhouYuxuanYX+SP-ViT-Learning-2D-Spatial-Priors-for-Vision-Transformers/repo \\
        --lape /work/.mirror/Ingrid725+LaPE/repo \\
        --ropevit /work/.mirror/naver-ai+rope-vit/repo \\
        --mae /work/.mirror/facebookresearch+mae/repo \\
        --dinov3 /work/.mirror/facebookresearch+dinov3/repo \\
        --eva /work/.mirror/baaivision+EVA/repo \\
        --croma /work/.mirror/antofuller+CROMA/repo \\
        --lookhere /work/.mirror/GreenCUBIC+lookhere/repo \\
        --out tests/fixtures/golden

Everything runs on CPU in float32 (MAE's numpy code runs in float64 and is cast to
float32), single-threaded, with fixed seeds, so results are deterministic.
"""

import argparse
import ast
import builtins
import hashlib
import math
import os
import subprocess
import sys
import types
from functools import partial

import numpy
import torch
import torch.nn as nn
import torch.nn.functional as F

EXPECTED_COMMITS = {
    "spvit": "c189568c43adc713cb8fe05263e29667ce705f37",
    "lape": "e188f7e56126b788c28afca0454c57b7d033b963",
    "ropevit": "ce85c2e56c5ff3aadc10e1a849872081f7b86293",
    "mae": "efb2a8062c206524e35e47d04501ed4f544c0ae8",
    "dinov3": "6876159a11b4df116f30f667f8c9888617df0751",
    "eva": "5623d08bb08a8268c7bc18e1d9b8b4bd651fe4d9",
    "croma": "59505a6bcadbf36ba20767270154bf9f3067c5e7",
    "lookhere": "641deab8c6610b6480a5c564a9a34a29bf934574",
}
REPO_URLS = {
    "spvit": "https://github.com/ZhouYuxuanYX/SP-ViT-Learning-2D-Spatial-Priors-for-Vision-Transformers",
    "lape": "https://github.com/Ingrid725/LaPE",
    "ropevit": "https://github.com/naver-ai/rope-vit",
    "mae": "https://github.com/facebookresearch/mae",
    "dinov3": "https://github.com/facebookresearch/dinov3",
    "eva": "https://github.com/baaivision/EVA",
    "croma": "https://github.com/antofuller/CROMA",
    "lookhere": "https://github.com/GreenCUBIC/lookhere",
}


# ----------------------------------------------------------------------------
# Reading the original sources and extracting definitions
# ----------------------------------------------------------------------------
def read_source(repo, relpath, rev="HEAD"):
    """Return (text, commit_or_None) for relpath inside repo (checkout or bare git dir)."""
    fs_path = os.path.join(repo, relpath)
    commit = None
    if os.path.isfile(fs_path):
        with open(fs_path, "r", encoding="utf-8") as f:
            text = f.read()
        try:
            commit = subprocess.check_output(
                ["git", "-C", repo, "rev-parse", "HEAD"], stderr=subprocess.DEVNULL, text=True).strip()
        except Exception:
            commit = None
        return text, commit
    # bare git dir (read-only plumbing commands only)
    text = subprocess.check_output(["git", f"--git-dir={repo}", "show", f"{rev}:{relpath}"], text=True)
    commit = subprocess.check_output(["git", f"--git-dir={repo}", "rev-parse", rev], text=True).strip()
    return text, commit


def extract_defs(source, names, filename):
    """Compile only the top-level class/def nodes called `names` (in file order)."""
    tree = ast.parse(source, filename=filename)
    wanted = set(names)
    nodes = [n for n in tree.body
             if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name in wanted]
    found = {n.name for n in nodes}
    missing = wanted - found
    if missing:
        raise RuntimeError(f"{filename}: definitions not found: {sorted(missing)}")
    # Drop decorators such as @register_model (none of the extracted defs use them,
    # but be safe: they would require the timm registry).
    for n in nodes:
        n.decorator_list = [d for d in n.decorator_list
                            if not (isinstance(d, ast.Name) and d.id == "register_model")]
    return compile(ast.Module(body=nodes, type_ignores=[]), filename, "exec")


def load_defs(repo, relpath, names, extra_ns, rev, key):
    text, commit = read_source(repo, relpath, rev)
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    ns = {"__name__": f"golden_{key}", "__builtins__": builtins}
    ns.update(extra_ns)
    exec(extract_defs(text, names, f"{key}:{relpath}"), ns)
    if commit is not None and commit != EXPECTED_COMMITS[key]:
        print(f"WARNING: {key} commit {commit} != expected {EXPECTED_COMMITS[key]}", file=sys.stderr)
    src = (f"{REPO_URLS[key]} @ {commit or 'unknown-commit'} : {relpath} "
           f"(sha256 {sha}); definitions executed unmodified: {', '.join(names)}")
    return ns, src


def torch_shims():
    """Namespace replacing `from timm.models.layers import DropPath, to_2tuple, trunc_normal_`."""
    from timm.layers import DropPath, to_2tuple, trunc_normal_
    return {"torch": torch, "nn": nn, "F": F, "math": math, "partial": partial,
            "DropPath": DropPath, "to_2tuple": to_2tuple, "trunc_normal_": trunc_normal_}


def numpy_float_shim():
    """numpy proxy that still provides the `np.float` alias (== builtins.float) removed in numpy 1.24."""
    mod = types.ModuleType("numpy_with_float_alias")
    mod.__getattr__ = lambda name: getattr(numpy, name)
    mod.float = builtins.float
    return mod


def randn_like_(t, gen, std=1.0, mean=0.0):
    with torch.no_grad():
        t.copy_(mean + std * torch.randn(t.shape, generator=gen, dtype=t.dtype))


# ----------------------------------------------------------------------------
# A. SP-ViT SP_SA
# ----------------------------------------------------------------------------
def make_spvit(repo, rev, out_dir):
    ns, src = load_defs(repo, "tlt/models/layers.py", ["SP_SA"], torch_shims(), rev, "spvit")
    SP_SA = ns["SP_SA"]
    dim, heads, S = 32, 4, 5
    N = S * S
    torch.manual_seed(0)
    m = SP_SA(dim, num_heads=heads)  # qkv_bias left at the original default (False)
    m.eval()
    gen = torch.Generator().manual_seed(1234)
    p = dict(m.named_parameters())
    for name in sorted(p):
        t = p[name]
        if name == "w1.weight":
            randn_like_(t, gen, std=0.3)
        elif name == "w1.bias":
            randn_like_(t, gen, std=0.3)
        elif name == "w2":
            randn_like_(t, gen, std=0.5)
        elif name == "b2":
            randn_like_(t, gen, std=0.1, mean=1.0)
        elif name.endswith("weight"):
            randn_like_(t, gen, std=0.2)
        else:  # remaining biases (proj.bias)
            randn_like_(t, gen, std=0.1)
    x = torch.randn(2, N, dim, generator=gen)
    with torch.no_grad():
        out = m(x)  # original forward(x, padding_mask=None)
        # --- everything below only re-uses the module's own parameters/methods ---
        attn_module = m.get_attention(x)  # original method: post-softmax attention (B, h, N, N)
        rel = m.rel_indices  # set by the module's own get_rel_indices(N) during forward: (1, N, N, 2)
        # prior: same sub-expressions as SP_SA.get_attention, evaluated with the module's params
        pos_emb = m.w1(rel).view(1, N, N, m.num_heads, -1)
        pos_map = torch.einsum('nm,hijnm->hijn', (m.w2.view(m.num_heads, -1), m.act(pos_emb))) + m.b2
        prior = pos_map[0].permute(2, 0, 1).contiguous()  # (heads, N, N)
        # independent check of the prior: reconstruct the attention and the output
        hd = dim // heads
        qk = F.linear(x, m.qk.weight, m.qk.bias).reshape(2, N, 2, heads, hd).permute(2, 0, 3, 1, 4)
        logits = (qk[0] @ qk[1].transpose(-2, -1)) * (hd ** -0.5)
        attn_re = (logits * prior.unsqueeze(0)).softmax(-1)
        v = F.linear(x, m.v.weight, m.v.bias).reshape(2, N, heads, hd).permute(0, 2, 1, 3)
        out_re = F.linear((attn_re @ v).transpose(1, 2).reshape(2, N, dim), m.proj.weight, m.proj.bias)
        assert torch.allclose(attn_re, attn_module, atol=1e-6), (attn_re - attn_module).abs().max()
        assert torch.allclose(out_re, out, atol=1e-5), (out_re - out).abs().max()
        # explicit closed form of the prior (documented in notes) must match as well
        r = torch.arange(N)
        row, col = r // S, r % S
        dx = (col[None, :] - col[:, None]).float()  # [i, j] = col_j - col_i (key minus query)
        dy = (row[None, :] - row[:, None]).float()
        W1, b1 = m.w1.weight, m.w1.bias
        hid = torch.relu(dx[..., None] * W1[:, 0] + dy[..., None] * W1[:, 1] + b1)  # (N, N, dim)
        prior_cf = torch.einsum('ijhc,hc->hij', hid.view(N, N, heads, hd), m.w2.view(heads, hd)) \
            + m.b2[:, None, None]
        assert torch.allclose(prior_cf, prior, atol=1e-6)
        assert torch.equal(rel[0, :, :, 0], dx) and torch.equal(rel[0, :, :, 1], dy)
    notes = f"""SP-ViT SP_SA (tlt/models/layers.py), dim={dim}, num_heads={heads}, head_dim={hd}, qkv_bias=False
(original default), qk_scale=None -> scale=head_dim**-0.5, attn_drop=proj_drop=0, eval mode. Tokens: N={N} =
{S}x{S} grid, NO class token, raster order n = row*{S} + col (col/x fastest).
Forward signature: forward(self, x, padding_mask=None) -> (B, N, C). It does NOT take H, W: the grid side is
inferred as int(N**0.5) inside get_rel_indices(N) (square grid assumed); padding_mask is ignored.
rel_indices is a plain attribute (not a buffer, not in state_dict), recomputed when rel_indices.size(1) != N.
State dict keys: v.weight (C,C), qk.weight (2C,C) [rows 0:C -> q, C:2C -> k; reshape (B,N,2,h,hd)],
w1.weight (C,2), w1.bias (C,), w2 (C,1), b2 (h,), proj.weight (C,C), proj.bias (C,). No v/qk biases.
Relative offsets rel[i, j, :] for query i (row of attention) and key j (column of attention), in units of patches:
  channel 0 = dx = col_j - col_i   (key minus query, x = column, positive to the right)
  channel 1 = dy = row_j - row_i   (key minus query, y = row, positive downwards)
  i.e. w1 input order is (dx, dy).
Prior (multiplicative, applied to the scaled logits BEFORE softmax):
  hidden = ReLU(w1.weight @ [dx, dy] + w1.bias)  -> (C,) = viewed as (h, hd): hidden width per head = hd = {hd},
           head k uses hidden channels k*hd:(k+1)*hd (view(1,N,N,h,-1));
  prior[k, i, j] = sum_c w2.view(h, hd)[k, c] * hidden[k*hd + c] + b2[k]   (w2 (C,1) viewed as (h, hd)).
  attn = softmax_j( (q_i . k_j) * scale * prior[k, i, j] );  out = proj( concat_heads(attn @ v) ).
Init in the original: w2 = zeros(C,1), b2 = ones(h)  (prior == 1 at init). Here all params are randomized
(seed 1234 generator): linear weights ~N(0,0.2^2), proj.bias ~N(0,0.1^2), w1.weight/w1.bias ~N(0,0.3^2),
w2 ~N(0,0.5^2), b2 ~1+0.1*N(0,1); x ~N(0,1). (With these random values the prior ranges about -3.3..3.7, so
some entries are negative; nothing in the original clamps it.)
'prior' (h, N, N) was obtained WITHOUT changing the code by re-evaluating in this script the same
sub-expressions as SP_SA.get_attention (m.w1(m.rel_indices), einsum with m.w2.view(h,-1), m.act, + m.b2) using
the module's own parameters and the rel_indices produced by its own get_rel_indices; it was verified to
reproduce m.get_attention(x) ('attn', from the original method) and the forward output, and to equal the
closed form above with rel = (dx, dy) as stated. 'rel_indices' (N, N, 2) is the module's own tensor."""
    d = {
        "state_dict": {k: v.detach().clone() for k, v in m.state_dict().items()},
        "x": x, "out": out.detach(), "prior": prior.detach(), "attn": attn_module.detach(),
        "rel_indices": rel[0].detach().clone(),
        "dim": dim, "num_heads": heads, "grid_size": S, "qkv_bias": 0,
        "notes": notes, "source": src,
    }
    path = os.path.join(out_dir, "spvit_sp_sa.pt")
    torch.save(d, path)
    return path


# ----------------------------------------------------------------------------
# B. LaPE Block
# ----------------------------------------------------------------------------
LAPE_LN_EPS = 1e-6


def make_lape(repo, rev, out_dir):
    ns, src = load_defs(repo, "vision_transformer.py", ["Mlp", "Attention", "Block"], torch_shims(), rev, "lape")
    Block = ns["Block"]
    dim, heads = 32, 4
    torch.manual_seed(0)
    # norm_layer as in LaPE's models.py deit_* factories: partial(nn.LayerNorm, eps=1e-6)
    blk = Block(dim=dim, num_heads=heads, mlp_ratio=4., qkv_bias=True,
                norm_layer=partial(nn.LayerNorm, eps=LAPE_LN_EPS), join_type='LaPE')
    blk.eval()
    gen = torch.Generator().manual_seed(4321)
    ln_names = {n for n, mod in blk.named_modules() if isinstance(mod, nn.LayerNorm)}
    for name, t in sorted(blk.named_parameters()):
        owner, leaf = name.rsplit(".", 1)
        if owner in ln_names:
            if leaf == "weight":
                randn_like_(t, gen, std=0.1, mean=1.0)
            else:
                randn_like_(t, gen, std=0.1)
        elif leaf == "weight":
            randn_like_(t, gen, std=0.2)
        else:
            randn_like_(t, gen, std=0.1)
    x = torch.randn(2, 17, dim, generator=gen)
    pos = 0.5 * torch.randn(1, 17, dim, generator=gen)
    with torch.no_grad():
        out_x, out_pos = blk(x, pos_embed=pos)
        # sanity re-derivation of the documented formula
        ln = lambda mod, t: F.layer_norm(t, (dim,), mod.weight, mod.bias, LAPE_LN_EPS)
        p2 = ln(blk.pe_norm, pos)
        h = x + blk.attn(ln(blk.norm1, x) + p2)
        h = h + blk.mlp(ln(blk.norm2, h))
        assert torch.allclose(p2, out_pos, atol=1e-6) and torch.allclose(h, out_x, atol=1e-6)
    notes = f"""LaPE Block (vision_transformer.py, join_type='LaPE'), dim={dim}, num_heads={heads}, head_dim=8,
mlp_ratio=4 (hidden 128, GELU exact/erf), qkv_bias=True, qk_scale=None -> scale=head_dim**-0.5, all dropouts 0,
drop_path=0 (Identity), eval mode.
norm_layer = partial(nn.LayerNorm, eps={LAPE_LN_EPS}) as used by every deit_* factory in LaPE's models.py (the
Block's own default norm_layer=nn.LayerNorm would give eps=1e-5); the same eps for pe_norm, norm1, norm2.
Call: out_x, out_pos = block(x, pos_embed=pos)   (signature forward(x, pos_embed=None, ind=None, norm_pe=None)).
Per-block formula:
  p'  = pe_norm(pos)                       # independent LayerNorm over channels for the PE (pos is (1,N,C), broadcast over B)
  h   = x + Attn(norm1(x) + p')            # PE added AFTER norm1, only at the attention input (q, k AND v all see it)
  out = h + Mlp(norm2(h))
  returns (out, p'); p' (the normalized PE) is what the next block receives as pos_embed (progressive PE).
  Attn: qkv = Linear(C,3C) reshaped (B,N,3,h,hd) -> q,k,v; softmax(q k^T * scale) v -> proj Linear(C,C).
In the full LaPE VisionTransformer, x (cls+patches) is NOT summed with pos_embed before block 0; the raw
learnable pos_embed (1, N+1, C) is fed to block 0, each block applies its own pe_norm to the PE it receives;
the final model norm is applied to x only. The cls token position also gets a PE row.
State dict keys: pe_norm.{{weight,bias}}, norm1.{{weight,bias}}, attn.qkv.{{weight,bias}}, attn.proj.{{weight,bias}},
norm2.{{weight,bias}}, mlp.fc1.{{weight,bias}}, mlp.fc2.{{weight,bias}}.
Randomization (seed 4321 generator): LayerNorm weight ~1+0.1*N(0,1), LayerNorm bias ~0.1*N(0,1), Linear weights
~N(0,0.2^2), Linear biases ~N(0,0.1^2); x ~N(0,1) (2,17,{dim}); pos ~0.5*N(0,1) (1,17,{dim})."""
    d = {
        "state_dict": {k: v.detach().clone() for k, v in blk.state_dict().items()},
        "x": x, "pos": pos, "out_x": out_x.detach(), "out_pos": out_pos.detach(),
        "dim": dim, "num_heads": heads, "mlp_ratio": 4.0, "qkv_bias": 1, "ln_eps": LAPE_LN_EPS,
        "notes": notes, "source": src,
    }
    path = os.path.join(out_dir, "lape_block.pt")
    torch.save(d, path)
    return path


# ----------------------------------------------------------------------------
# C. RoPE-ViT
# ----------------------------------------------------------------------------
def make_ropevit(repo, rev, out_dir):
    names = ["init_random_2d_freqs", "compute_mixed_cis", "compute_axial_cis", "init_t_xy",
             "reshape_for_broadcast", "apply_rotary_emb"]
    ns, src = load_defs(repo, "models/vit_rope.py", names, torch_shims(), rev, "ropevit")
    head_dim, heads, end_x, end_y = 16, 2, 5, 3
    N = end_x * end_y
    gen = torch.Generator().manual_seed(2024)

    # (i) axial
    axial_cis = ns["compute_axial_cis"](dim=head_dim, end_x=end_x, end_y=end_y, theta=100)
    aq = torch.randn(2, heads, N, head_dim, generator=gen)
    ak = torch.randn(2, heads, N, head_dim, generator=gen)
    aq_out, ak_out = ns["apply_rotary_emb"](aq.clone(), ak.clone(), freqs_cis=axial_cis)

    # (ii) mixed (learnable per-head frequencies); init_random_2d_freqs draws torch.rand(1) per head
    # from the global RNG -> seed it right before the call.
    torch.manual_seed(7)
    freqs = ns["init_random_2d_freqs"](dim=head_dim, num_heads=heads, theta=10, rotate=True)  # (2, heads, hd/2)
    t_x, t_y = ns["init_t_xy"](end_x=end_x, end_y=end_y)
    # as rope_vit_models does for depth=1: stack over blocks at dim 1, then view(2, depth, -1)
    freqs_param = torch.stack([freqs], dim=1).view(2, 1, -1)  # (2, depth=1, heads*hd/2)
    mixed_cis_all = ns["compute_mixed_cis"](freqs_param, t_x, t_y, num_heads=heads)  # (depth, heads, N, hd/2)
    mixed_cis = mixed_cis_all[0]  # the per-block freqs_cis handed to the block: (heads, N, hd/2)
    mq = torch.randn(2, heads, N, head_dim, generator=gen)
    mk = torch.randn(2, heads, N, head_dim, generator=gen)
    mq_out, mk_out = ns["apply_rotary_emb"](mq.clone(), mk.clone(), freqs_cis=mixed_cis)

    # sanity checks of the documented conventions
    r = torch.arange(N)
    assert torch.equal(t_x, (r % end_x).float()) and torch.equal(t_y, (r // end_x).float())
    nf = head_dim // 4
    base = 1.0 / (100 ** (torch.arange(0, head_dim, 4)[:nf].float() / head_dim))
    ang = torch.cat([t_x[:, None] * base, t_y[:, None] * base], -1)  # (N, hd/2)
    assert torch.allclose(torch.angle(axial_cis), torch.atan2(torch.sin(ang), torch.cos(ang)), atol=1e-5)

    def rot(x, a):
        c, s = torch.cos(a), torch.sin(a)
        xe, xo = x[..., 0::2], x[..., 1::2]
        o = torch.empty_like(x)
        o[..., 0::2] = xe * c - xo * s
        o[..., 1::2] = xe * s + xo * c
        return o
    assert torch.allclose(rot(aq, ang), aq_out, atol=1e-5)
    ang_m = t_x[None, :, None] * freqs[0][:, None, :] + t_y[None, :, None] * freqs[1][:, None, :]  # (h,N,hd/2)
    assert torch.allclose(rot(mq, ang_m), mq_out, atol=1e-5)

    notes = f"""RoPE-ViT (models/vit_rope.py). head_dim={head_dim}, heads={heads}, grid end_x={end_x} (width, columns),
end_y={end_y} (height, rows), N={N}; no class token in these tensors (the original RoPEAttention applies RoPE only to
tokens 1: i.e. skips the cls token).
Token order: init_t_xy(end_x, end_y): t = arange(end_x*end_y); t_x = t % end_x (column index, x fastest),
t_y = t // end_x (row index) -> raster order n = row*end_x + col. (The model calls init_t_xy(end_x=W//patch,
end_y=H//patch).) 't_x','t_y' are stored.
Channel pairing: apply_rotary_emb views the last dim as complex numbers from ADJACENT pairs
(x[2j] = real, x[2j+1] = imag), multiplies by freqs_cis = exp(i*angle), i.e. rotation by +angle:
  out[2j] = x[2j]*cos(a_j) - x[2j+1]*sin(a_j);  out[2j+1] = x[2j]*sin(a_j) + x[2j+1]*cos(a_j).
Computation in float32 (xq.float()), result cast back to input dtype. q and k are rotated identically.
(i) AXIAL: compute_axial_cis(dim=16, end_x=5, end_y=3, theta=100) -> complex (N, hd/2) = (15, 8):
  f_m = 1 / theta**(4m/hd), m = 0..hd/4-1 (= arange(0,hd,4)/hd -> 4 freqs: 1, 100^-0.25, 100^-0.5, 100^-0.75);
  complex pairs j=0..3 (real channels 0..7, FIRST half) use angle t_x*f_j (x/column);
  complex pairs j=4..7 (real channels 8..15, SECOND half) use angle t_y*f_(j-4) (y/row).
  Same freqs_cis for all heads. Stored 'axial_freqs_cis' as view_as_real -> (15, 8, 2) [cos, sin].
(ii) MIXED: init_random_2d_freqs(dim=16, num_heads=2, theta=10, rotate=True) with torch.manual_seed(7) right
  before the call (it draws torch.rand(1) per head from the global RNG). Returns freqs of shape
  (2, num_heads, hd/2) = (2, 2, 8): freqs[0] = x-frequencies, freqs[1] = y-frequencies. For head h with random angle
  phi_h ~ U(0, 2pi): mag_m = 1/theta**(4m/hd) (m=0..hd/4-1);
    freqs[0,h] = cat[mag*cos(phi_h), mag*cos(pi/2+phi_h)],  freqs[1,h] = cat[mag*sin(phi_h), mag*sin(pi/2+phi_h)].
    (i.e. freqs[0,h] = [mag*cos(phi), -mag*sin(phi)], freqs[1,h] = [mag*sin(phi), mag*cos(phi)]: pairs j<hd/4 use
     direction (cos phi, sin phi) and pairs j>=hd/4 the perpendicular direction (-sin phi, cos phi) in (x, y).)
  'mixed_freqs' stores exactly this (2, 2, 8) tensor. In rope_vit_models the learnable nn.Parameter `freqs` is
  torch.stack([per-block freqs], dim=1).view(2, depth, heads*hd/2); 'mixed_freqs_param' stores that for depth=1:
  (2, 1, 16) (head-major: index h*8 + j). compute_mixed_cis MUST be given this (2, depth, heads*hd/2) layout
  (it uses depth = freqs.shape[1]); it returns complex (depth, heads, N, hd/2) and block d uses [d] -> (heads, N, hd/2).
  Angle for head h, token n, complex pair j: a = t_x[n]*freqs[0,h,j] + t_y[n]*freqs[1,h,j]
  (all hd/2 pairs mix x and y; there is no x/y half split). Stored 'mixed_freqs_cis' = view_as_real of the
  (heads, N, hd/2) complex tensor -> (2, 15, 8, 2).
Inputs q,k ~N(0,1) from a seed-2024 generator, shape (B=2, heads=2, N=15, hd=16)."""
    d = {
        "axial_q_in": aq, "axial_k_in": ak, "axial_q_out": aq_out, "axial_k_out": ak_out,
        "axial_freqs_cis": torch.view_as_real(axial_cis).contiguous(),
        "mixed_freqs": freqs.contiguous(), "mixed_freqs_param": freqs_param.contiguous(),
        "mixed_q_in": mq, "mixed_k_in": mk, "mixed_q_out": mq_out, "mixed_k_out": mk_out,
        "mixed_freqs_cis": torch.view_as_real(mixed_cis).contiguous(),
        "t_x": t_x, "t_y": t_y,
        "head_dim": head_dim, "num_heads": heads, "end_x": end_x, "end_y": end_y,
        "axial_theta": 100.0, "mixed_theta": 10.0, "mixed_seed": 7,
        "notes": notes, "source": src,
    }
    path = os.path.join(out_dir, "ropevit.pt")
    torch.save(d, path)
    return path


# ----------------------------------------------------------------------------
# D. MAE 2D sin-cos
# ----------------------------------------------------------------------------
def make_mae(repo, rev, out_dir):
    names = ["get_2d_sincos_pos_embed", "get_2d_sincos_pos_embed_from_grid", "get_1d_sincos_pos_embed_from_grid"]
    ns, src = load_defs(repo, "util/pos_embed.py", names, {"np": numpy_float_shim(), "torch": torch}, rev, "mae")
    D, G = 32, 4
    pe64 = ns["get_2d_sincos_pos_embed"](D, G, cls_token=True)
    assert pe64.shape == (1 + G * G, D)
    pos = torch.from_numpy(numpy.asarray(pe64)).float()
    # sanity check of the documented layout
    r = torch.arange(G * G, dtype=torch.float64)
    col, row = r % G, r // G
    om = 1.0 / 10000 ** (torch.arange(D // 4, dtype=torch.float64) / (D / 4))

    def e1(p):
        o = p[:, None] * om[None]
        return torch.cat([torch.sin(o), torch.cos(o)], 1)
    ref = torch.cat([torch.zeros(1, D, dtype=torch.float64), torch.cat([e1(col), e1(row)], 1)], 0)
    assert torch.allclose(ref.float(), pos, atol=1e-6)
    notes = f"""MAE util/pos_embed.py get_2d_sincos_pos_embed(embed_dim={D}, grid_size={G}, cls_token=True), computed in
float64 numpy, stored as float32 'pos' ({1 + G * G}, {D}). (np.float, removed in numpy>=1.24, is shimmed as builtins.float.)
Row 0 = class token = all zeros. Rows 1.. = patch tokens in raster order n = row*G + col (col/x fastest).
Channel layout (D={D}): pos[1+n] = [ E(col) , E(row) ], each E of width D/2={D // 2}:
  E(p) = [ sin(p*w_0) .. sin(p*w_(D/4-1)), cos(p*w_0) .. cos(p*w_(D/4-1)) ]  (all sins then all cos, NOT interleaved),
  w_k = 1 / 10000**(k / (D/4)), k = 0..D/4-1 = 0..{D // 4 - 1}.
NOTE: the FIRST half encodes the column/x (width) coordinate even though the code calls it emb_h, because
np.meshgrid(grid_w, grid_h) puts w first (grid[0] = column index); the SECOND half encodes the row/y coordinate.
Positions are integer patch indices 0..G-1 (no normalization)."""
    d = {"pos": pos, "embed_dim": D, "grid_size": G, "cls_token": 1, "notes": notes, "source": src}
    path = os.path.join(out_dir, "mae_sincos.pt")
    torch.save(d, path)
    return path


# ----------------------------------------------------------------------------
# E. DINOv3 RoPE
# ----------------------------------------------------------------------------
def make_dinov3(repo, rev, out_dir):
    from typing import List, Literal, Tuple
    base_ns = {"torch": torch, "nn": nn, "F": F, "math": math, "np": numpy,
               "Tensor": torch.Tensor, "Literal": Literal, "Tuple": Tuple, "List": List}
    rope_ns, src_rope = load_defs(repo, "dinov3/layers/rope_position_encoding.py",
                                  ["RopePositionEmbedding"], base_ns, rev, "dinov3")
    attn_ns, src_attn = load_defs(repo, "dinov3/layers/attention.py",
                                  ["rope_rotate_half", "rope_apply", "SelfAttention"], base_ns, rev,
                                  "dinov3")
    Rope, SelfAttention = rope_ns["RopePositionEmbedding"], attn_ns["SelfAttention"]
    dim, heads, H, W = 32, 2, 3, 5
    hd = dim // heads
    gen = torch.Generator().manual_seed(3)
    d = {}
    # (i) base=100, 'separate', applied to q/k with one prefix token by the original attention
    rope = Rope(dim, num_heads=heads, base=100.0, dtype=torch.float32).eval()
    sin, cos = rope(H=H, W=W)
    attn = SelfAttention(dim, num_heads=heads)
    q = torch.randn(2, heads, 1 + H * W, hd, generator=gen)
    k = torch.randn(2, heads, 1 + H * W, hd, generator=gen)
    q_out, k_out = attn.apply_rope(q, k, (sin, cos))
    d.update(periods=rope.periods.clone(), sin=sin, cos=cos, q_in=q, k_in=k, q_out=q_out, k_out=k_out)
    # (ii) other coordinate normalisations and the min/max-period schedule, 4 x 2 grid
    for norm in ("min", "max"):
        s_, c_ = Rope(dim, num_heads=heads, base=100.0, normalize_coords=norm, dtype=torch.float32)(H=4, W=2)
        d[f"sin_{norm}"], d[f"cos_{norm}"] = s_, c_
    rope_p = Rope(dim, num_heads=heads, base=None, min_period=0.5, max_period=40.0, dtype=torch.float32)
    d["periods_minmax"] = rope_p.periods.clone()
    d["sin_minmax"], d["cos_minmax"] = rope_p(H=4, W=2)
    # (iii) training-time augmentation, drawn from the global RNG right after manual_seed(11)
    rope_aug = Rope(dim, num_heads=heads, base=100.0, shift_coords=0.3, jitter_coords=1.5,
                    rescale_coords=2.0, dtype=torch.float32).train()
    torch.manual_seed(11)
    d["sin_aug"], d["cos_aug"] = rope_aug(H=H, W=W)
    rope_aug.eval()
    s_eval, _ = rope_aug(H=H, W=W)
    assert torch.equal(s_eval, sin)  # augmentation is training-only
    # sanity: the documented closed form
    cy = 2 * (torch.arange(H) + 0.5) / H - 1
    cx = 2 * (torch.arange(W) + 0.5) / W - 1
    yy, xx = torch.meshgrid(cy, cx, indexing="ij")
    per = 100.0 ** (2 * torch.arange(hd // 4).float() / (hd // 2))
    ang = 2 * math.pi * torch.cat([yy.reshape(-1, 1) / per, xx.reshape(-1, 1) / per], 1).tile(2)
    assert torch.allclose(ang.sin(), sin, atol=1e-5)
    notes = f"""DINOv3 RopePositionEmbedding(embed_dim={dim}, num_heads={heads}) -> head_dim {hd}, periods (hd/4,)
= base**(2k/(hd/2)) (base 100) or min/max log-spaced (min 0.5, max 40). forward(H, W) -> (sin, cos), each (H*W, hd):
coords of patch centres (arange(0.5, H)/H, 'separate'; /min(H,W) or /max(H,W) for 'min'/'max') mapped to [-1, 1],
(cy, cx) ij order; angle = 2 pi coord / period -> (HW, 2, hd/4) flattened to [y-angles, x-angles] and tiled x2
(rotate-half layout: channel i pairs with i + hd/2). SelfAttention.apply_rope(q, k, (sin, cos)) with q, k
(B, heads, N, hd), N = 1 prefix + H*W: prefix tokens untouched, patch tokens x*cos + rope_rotate_half(x)*sin.
dtype float32 (hub models: pos_embed_rope_dtype='fp32'). Grid: H={H} rows, W={W} columns; 'min'/'max'/'minmax'
tensors at H=4, W=2. 'sin_aug'/'cos_aug': train() mode with shift_coords=0.3, jitter_coords=1.5,
rescale_coords=2.0, torch.manual_seed(11) immediately before forward(H={H}, W={W}) (draws: shift (2,), jitter (2,),
rescale (1,), in that order, on CPU float32). q, k ~ N(0, 1) from a seed-3 generator."""
    d.update(dim=dim, num_heads=heads, H=H, W=W, notes=notes, source=src_rope + " | " + src_attn)
    path = os.path.join(out_dir, "dinov3_rope.pt")
    torch.save(d, path)
    return path


# ----------------------------------------------------------------------------
# F. EVA-02 RoPE
# ----------------------------------------------------------------------------
def make_eva(repo, rev, out_dir):
    from einops import rearrange, repeat  # EVA's own dependency (pip install einops)
    ns, src = load_defs(repo, "EVA-02/asuka/rope.py",
                        ["broadcat", "rotate_half", "VisionRotaryEmbeddingFast"],
                        {"torch": torch, "nn": nn, "pi": math.pi, "rearrange": rearrange,
                         "repeat": repeat}, rev, "eva")
    Rope = ns["VisionRotaryEmbeddingFast"]
    dim, heads, pt = 32, 2, 4
    hd = dim // heads
    gen = torch.Generator().manual_seed(5)
    d = {}
    for ft in (6, 3):  # fine-tune grid larger / smaller than the pretraining grid (4 x 4)
        rope = Rope(dim=hd // 2, pt_seq_len=pt, ft_seq_len=ft)
        q = torch.randn(2, heads, 1 + ft * ft, hd, generator=gen)
        # as EVA-02/asuka/modeling_finetune.py Attention.forward: the class token is left out
        q_out = torch.cat((q[:, :, :1, :], rope(q[:, :, 1:, :])), -2)
        d.update({f"freqs_cos_{ft}": rope.freqs_cos.clone(), f"freqs_sin_{ft}": rope.freqs_sin.clone(),
                  f"q_in_{ft}": q, f"q_out_{ft}": q_out})
    notes = f"""EVA-02 VisionRotaryEmbeddingFast(dim=head_dim/2={hd // 2}, pt_seq_len={pt}, ft_seq_len=ft), ft in (6, 3),
head_dim {hd}, heads {heads}. freqs f_m = 1/10000**(2m/(hd/2)), m < hd/4; t = arange(ft)/ft*pt (position
interpolation onto the {pt}x{pt} pretraining grid); per token (row r, col c, raster order) the (hd,) angles are
[r-angles, c-angles], each repeated x2 (interleaved pairs); freqs_cos/sin are (ft*ft, hd) buffers (checkpoint keys
rope.freqs_cos / rope.freqs_sin). forward(t) = t*cos + rotate_half(t)*sin with rotate_half on adjacent pairs
(-x1, x0). q_out: as modeling_finetune.Attention, the class token (index 0) is not rotated. q ~ N(0,1), seed-5
generator, shape (2, heads, 1 + ft*ft, hd)."""
    d.update(dim=dim, num_heads=heads, pt_seq_len=pt, notes=notes, source=src)
    path = os.path.join(out_dir, "eva02_rope.pt")
    torch.save(d, path)
    return path


# ----------------------------------------------------------------------------
# G. CROMA 2D ALiBi
# ----------------------------------------------------------------------------
def make_croma(repo, rev, out_dir):
    import itertools
    ns, src = load_defs(repo, "use_croma.py", ["get_2dalibi"],
                        {"torch": torch, "math": math, "itertools": itertools}, rev, "croma")
    d = {}
    for heads, side in ((3, 4), (4, 3), (6, 3)):  # power-of-two and interleaved slope sequences
        d[f"bias_{heads}h_{side}x{side}"] = ns["get_2dalibi"](num_heads=heads, num_patches=side * side)
    notes = """CROMA get_2dalibi(num_heads, num_patches) -> (1, heads, N, N) additive bias, N = side**2 (square grids only:
side = int(sqrt(N))); points = itertools.product(range(side), range(side)) (raster order); bias[h, i, j] =
-slope_h * Euclidean distance between points i and j (in patches); slopes = ALiBi get_slopes(heads)
(geometric 2**(-8/n)**(k+1) for n a power of two, else the closest power's sequence + every other slope of
twice that). Keys bias_<heads>h_<side>x<side>."""
    d.update(notes=notes, source=src)
    path = os.path.join(out_dir, "croma_alibi.pt")
    torch.save(d, path)
    return path


# ----------------------------------------------------------------------------
# H. LookHere
# ----------------------------------------------------------------------------
LOOKHERE_CASES = {  # name: (head_directions, distance, global_slope, layer_slopes)
    "halves": ("halves", "linear", 1.5, [1.5, 0.5]),
    "triangles": ("triangles", "linear", 1.0, [1.0, 1.0]),
    "corners": ("corners", "sqrt", 1.0, [2.0, 1.0]),
    "diagonals": ("diagonals", "linear", 0.5, [1.0, 1.0]),
    "eighths1": ("eighths1", "square", 1.0, [1.0, 1.0]),
    "eighths2": ("eighths2", "linear", 1.0, [1.0, 1.0]),
    "none": ("none", "linear", 1.0, [1.0, 1.0]),
    "zerohalves": ("zerohalves", "linear", 1.0, [1.0, 1.0]),
}


def make_lookhere(repo, rev, out_dir):
    from itertools import groupby
    from scipy.spatial.distance import cdist, pdist, squareform  # LookHere's own dependency
    names = ["get_none_slopes", "get_slopes", "create_lh_bias_tensor", "create_lh_layer_tensor"]
    ns, src = load_defs(repo, "lookhere.py", names,
                        {"torch": torch, "np": numpy, "F": F, "groupby": groupby, "cdist": cdist,
                         "pdist": pdist, "squareform": squareform}, rev, "lookhere")
    grid, depth, heads = (3, 4), 2, 4
    d = {}
    for name, (directions, distance, g, layers) in LOOKHERE_CASES.items():
        cfg = {"global_slope": g, "layer_slopes": layers, "head_directions": directions,
               "distance": distance, "fill_with": "inf"}
        d[f"bias_{name}"] = ns["create_lh_bias_tensor"](cfg, grid, depth, heads)
    notes = f"""LookHere create_lh_bias_tensor(lh_config, grid_size={grid} (rows, cols), depth={depth}, num_heads={heads})
-> (depth, heads, N, N) bfloat16 additive bias (before the class-token zero padding of LookHere.set_pos_embed),
N = rows*cols in raster order (x fastest). lh_config per key bias_<name>: {LOOKHERE_CASES} as
(head_directions, distance, global_slope, layer_slopes), fill_with='inf' (masked -> -bfloat16 max).
Query i = row of the matrix, key j = column; a head sees key j unless its direction masks it."""
    d.update(grid=list(grid), depth=depth, num_heads=heads, notes=notes, source=src,
             cases={k: dict(directions=v[0], distance=v[1], global_slope=v[2], layer_slopes=v[3])
                    for k, v in LOOKHERE_CASES.items()})
    path = os.path.join(out_dir, "lookhere_bias.pt")
    torch.save(d, path)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    makers = {"spvit": make_spvit, "lape": make_lape, "ropevit": make_ropevit, "mae": make_mae,
              "dinov3": make_dinov3, "eva": make_eva, "croma": make_croma, "lookhere": make_lookhere}
    for key in makers:
        ap.add_argument(f"--{key}", help=f"{REPO_URLS[key]}: checkout dir or bare git dir "
                                         "(its fixture is made only when given)")
    ap.add_argument("--rev", default="HEAD", help="revision to read from bare git dirs (default HEAD)")
    ap.add_argument("--out", default="tests/fixtures/golden", help="output directory")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)
    paths = [make(getattr(args, key), args.rev, args.out) for key, make in makers.items()
             if getattr(args, key)]
    if not paths:
        ap.error(f"give at least one of {', '.join('--' + k for k in makers)}")
    for p in paths:
        d = torch.load(p, weights_only=True)  # must be loadable in safe mode
        print(f"{p}: {os.path.getsize(p)} bytes, keys={sorted(d)}")


if __name__ == "__main__":
    main()
