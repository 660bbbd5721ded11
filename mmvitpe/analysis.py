"""What the positional encodings do: the measurements behind tools/analysis/.

Every function takes a ViT of mmvitpe (``PEViT`` or a backbone built on it)
and returns plain tensors or row dicts; the tools turn them into PNG and CSV.
"""
import math
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models.pos_encodings import RelPosBias, RotaryPE, SPSA
from .models.pos_encodings.base import relative_offsets


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two tensors' entries (same numel)."""
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-12))


@torch.no_grad()
def token_and_pe_per_layer(model: nn.Module, img: Tensor) -> List[Dict[str, Tensor]]:
    """For each block: its normalised token input and the PE it receives.

    The token embedding is ``norm1(x)`` averaged over the batch (N, D). The PE
    is what the scheme adds to it at that block (LaPE/PVG/MPVG: LN'_l(pos)),
    or, for schemes that act once at the input, the input PE table; schemes
    without an additive PE give None.
    """
    x, state = model.embed(img)
    prefix = model.num_prefix_tokens
    patches = x.shape[1] - prefix
    input_pe = state.tensors.get('pos')
    layers = []
    for block in model.blocks:
        tokens = block.norm1(x)
        added = model.pe.attention_input(tokens, block.index, state) - tokens
        if added.abs().amax() > 0:
            pe = added.mean(0)
        else:
            pe = input_pe[0] if input_pe is not None else None
        # detach: a table at its own grid is the Parameter itself, even under no_grad
        layers.append(dict(tokens=tokens.mean(0)[prefix:],
                           pe=None if pe is None else pe[-patches:].detach()))
        x = model.pe.after_block(block(x, model.pe, state), block.index, state)
    return layers


def correlation_rows(layers: List[Dict[str, Tensor]]) -> List[dict]:
    """Per-layer correlation between token embeddings and PE (MPVG Fig. 4)."""
    return [dict(layer=i, correlation=pearson(layer['tokens'], layer['pe'])
                 if layer['pe'] is not None else float('nan'))
            for i, layer in enumerate(layers)]


@torch.no_grad()
def absolute_table(model: nn.Module, grid: Tuple[int, int]) -> Tensor:
    """The (H*W, D) additive input PE of the model at ``grid`` (zeros if none)."""
    state = model.pe.prepare(grid, torch.device('cpu'), torch.float32)
    zeros = torch.zeros(1, model.num_prefix_tokens + grid[0] * grid[1], model.embed_dim)
    return model.pe.embed(zeros, state)[0, model.num_prefix_tokens:].detach()


def cosine_similarity_maps(table: Tensor, grid: Tuple[int, int],
                           positions: Sequence[Tuple[int, int]]) -> Tensor:
    """(P, H, W): cosine similarity of each chosen position's PE with all others
    (ViT paper Fig. 7)."""
    unit = F.normalize(table, dim=-1)
    index = torch.tensor([r * grid[1] + c for r, c in positions])
    return (unit[index] @ unit.t()).view(len(positions), *grid)


@torch.no_grad()
def relative_maps(model: nn.Module, grid: Tuple[int, int]) -> Dict[str, Tensor]:
    """Per block, the (heads, 2h-1, 2w-1) map over relative offsets: SP-SA's
    multiplicative prior (SP-ViT Fig. 1b, key minus query) or the additive
    bias table (Swin layout). Rows run over dy, columns over dx, from -(h-1)
    and -(w-1) up; SP-SA is evaluated at ``grid``, tables at their own size."""
    pe, (h, w) = model.pe, grid
    if isinstance(pe, SPSA):
        offsets = relative_offsets((h, w), torch.device('cpu'))
        return {f'block{b}': pe.priors[str(b)](offsets).view(pe.num_heads, 2 * h - 1, 2 * w - 1)
                for b in pe.blocks}
    if isinstance(pe, RelPosBias):
        th, tw = pe.table_grid
        return {f'block{b}': pe.tables[str(b)].t().reshape(pe.num_heads, 2 * th - 1, 2 * tw - 1)
                for b in pe.blocks}
    return {}


def rope_frequency_rows(model: nn.Module) -> List[dict]:
    """RoPE frequencies per block, head and channel pair: |f|, direction."""
    pe = model.pe
    if not isinstance(pe, RotaryPE):
        return []
    freqs = pe.frequencies().detach()  # (2, depth|1, heads|1, d/2)
    rows = []
    for b in range(freqs.shape[1]):
        for h in range(freqs.shape[2]):
            for m in range(freqs.shape[3]):
                fx, fy = float(freqs[0, b, h, m]), float(freqs[1, b, h, m])
                rows.append(dict(block=b, head=h, pair=m, fx=fx, fy=fy,
                                 magnitude=math.hypot(fx, fy),
                                 angle_deg=math.degrees(math.atan2(fy, fx))))
    return rows


@torch.no_grad()
def resolution_sweep(model: nn.Module, img: Tensor, sizes: Sequence[int],
                     reference: int) -> List[dict]:
    """How much the backbone's outputs change as the input size moves away from
    ``reference`` (the pretraining size): cosine similarity of each output
    level, resized to the reference output, with the reference output."""
    def features(size):
        resized = F.interpolate(img, size=(size, size), mode='bilinear', align_corners=False)
        outs = model(resized)
        return outs if isinstance(outs, (tuple, list)) else [outs]
    ref = features(reference)
    rows = []
    for size in sizes:
        for level, (out, r) in enumerate(zip(features(size), ref)):
            if out.dim() == 4:
                out = F.interpolate(out, size=r.shape[-2:], mode='bilinear', align_corners=False)
            rows.append(dict(size=size, level=level,
                             cosine=float(F.cosine_similarity(out.flatten(1), r.flatten(1)).mean())))
    return rows


def complexity(model: nn.Module, img: Tensor) -> dict:
    """Parameters and forward FLOPs (torch's FlopCounterMode, which counts SDPA)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(img)
    return dict(params=sum(p.numel() for p in model.parameters()),
                pe_params=sum(p.numel() for p in model.pe.parameters()),
                gflops=counter.get_total_flops() / 1e9)


# ---- helpers for the command-line tools ---------------------------------------
def backbone_from_config(config: str, checkpoint: str = None, cfg_options: dict = None,
                         pos_embed: dict = None) -> nn.Module:
    """The config's backbone (optionally with another PE), weights from a
    checkpoint (whole model or backbone; any layout :mod:`mmvitpe.weights` reads)."""
    from mmengine.config import Config

    from .registry import MODELS
    from .weights import backbone_part, load_pretrained, read_state_dict
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    backbone = dict(cfg.model.backbone)
    for key in ('init_cfg', 'pretrained'):
        backbone.pop(key, None)
    if pos_embed is not None:
        backbone['pos_embed'] = pos_embed
    model = MODELS.build(backbone)
    if checkpoint:
        load_pretrained(model, backbone_part(read_state_dict(checkpoint)), strict=False)
    return model.eval()


def load_images(directory: str, size: int, count: int = 4) -> Tensor:
    """Up to ``count`` images of a directory, resized, ImageNet-normalised
    (B, 3, size, size); random noise when no directory is given."""
    import glob
    import os

    import cv2
    if not directory:
        return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(0))
    paths = sorted(p for p in glob.glob(os.path.join(directory, '*'))
                   if p.lower().endswith(('.jpg', '.jpeg', '.png')))[:count]
    if not paths:
        raise FileNotFoundError(f'no .jpg/.png images in {directory}')
    mean, std = torch.tensor([123.675, 116.28, 103.53]), torch.tensor([58.395, 57.12, 57.375])
    imgs = []
    for path in paths:
        rgb = cv2.cvtColor(cv2.resize(cv2.imread(path), (size, size)), cv2.COLOR_BGR2RGB)
        imgs.append((torch.from_numpy(rgb).float() - mean) / std)
    return torch.stack(imgs).permute(0, 3, 1, 2).contiguous()
