"""What the positional encodings do: the measurements behind tools/analysis/.

Every function takes a ViT of mmvitpe (``PEViT`` or a backbone built on it)
and returns plain tensors or row dicts; the tools turn them into PNG and CSV.
"""
import math
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
    input_pe = model.pe.embed(torch.zeros_like(x[:1]), state)
    input_pe = input_pe if input_pe.abs().amax() > 0 else None
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
    """Per block, the (heads, 2h-1, 2w-1) map over relative offsets of the
    scheme's learned relative term ({} for schemes without one; see
    ``PositionalEncoding.relative_maps``)."""
    # detached: a view of a parameter still requires grad under no_grad
    return {name: table.detach() for name, table in model.pe.relative_maps(tuple(grid)).items()}


def rope_frequency_rows(model: nn.Module) -> List[dict]:
    """Rotary frequencies per block, head and channel pair: |f|, direction."""
    freqs = model.pe.frequencies()
    if freqs is None:
        return []
    freqs = freqs.detach()  # (2, depth|1, heads|1, pairs)
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
